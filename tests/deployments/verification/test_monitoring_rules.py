"""The monitoring check's parsing (apps.deployments.domain.monitoring): pure, no database."""

from __future__ import annotations

import pytest

from apps.deployments.domain.monitoring import REQUESTS_SERIES, deployment_series

EXPOSITION = """\
# HELP moc_deployment_requests_total Requests a deployment answered, by release and outcome.
# TYPE moc_deployment_requests_total counter
moc_deployment_requests_total{deployment="chat",release="7",version="3",outcome="ok"} 12.0
moc_deployment_requests_total{deployment="chat-staging",release="8",version="3",outcome="ok"} 2.0
# HELP moc_placements Placements by state.
# TYPE moc_placements gauge
moc_placements{state="loaded"} 1.0
"""


def test_the_deployments_series_are_found_by_its_label() -> None:
    found = deployment_series(EXPOSITION, sample=REQUESTS_SERIES, deployment="chat")
    assert found == [{"deployment": "chat", "release": "7", "version": "3", "outcome": "ok"}]


def test_another_deployments_series_does_not_count() -> None:
    assert deployment_series(EXPOSITION, sample=REQUESTS_SERIES, deployment="chat-prod") == []


def test_text_that_is_not_an_exposition_is_refused() -> None:
    with pytest.raises(ValueError, match="."):
        deployment_series("<html>not metrics{</html>", sample=REQUESTS_SERIES, deployment="chat")
