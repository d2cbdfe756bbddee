"""Serving in /metrics: each active placement's circuit breaker, read at scrape time."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from apps.core.redis_clients import redis_client
from apps.serving.domain.breaker import BreakerConfig
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PlacementState
from apps.serving.metrics import placement_labels
from apps.serving.resilience import Breakers
from tests.fleet.test_metrics import samples, value
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db
PROMTOOL = shutil.which("promtool")


def test_an_open_breaker_shows_as_open_on_its_placements_series(scrape: Callable[[], str]) -> None:
    failing = PlacementFactory(state=PlacementState.LOADED)
    healthy = PlacementFactory(state=PlacementState.LOADED)
    config = BreakerConfig(failure_threshold=1, open_s=60)
    Breakers(redis_client()).record(
        failing.pk, config, now=time.time(), error_class=ErrorClass.TIMEOUT, error="timeout"
    )

    text = scrape()

    assert value(text, "moc_placement_breaker_state", placement=str(failing.pk), state="open") == 1.0
    assert value(text, "moc_placement_breaker_state", placement=str(failing.pk), state="closed") == 0.0
    assert value(text, "moc_placement_breaker_state", placement=str(healthy.pk), state="closed") == 1.0
    assert value(text, "moc_placement_breaker_opened", placement=str(failing.pk)) == 1.0


def test_placements_that_ended_leave_the_breaker_series(scrape: Callable[[], str]) -> None:
    ended = PlacementFactory(state=PlacementState.UNLOADED)

    assert samples(scrape(), "moc_placement_breaker_state", placement=str(ended.pk)) == []


def test_the_breaker_series_carry_the_labels_placement_alerts_carry(scrape: Callable[[], str]) -> None:
    placement = PlacementFactory(state=PlacementState.LOADED)

    (opened,) = samples(scrape(), "moc_placement_breaker_opened", placement=str(placement.pk))

    assert opened.labels == placement_labels(placement)  # raising.breakers_check labels its alerts so
    assert set(opened.labels) == {"placement", "model", "version", "node", "device"}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
def test_promtool_accepts_the_breaker_series(scrape: Callable[[], str]) -> None:
    PlacementFactory(state=PlacementState.LOADED)

    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=scrape(), capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr
