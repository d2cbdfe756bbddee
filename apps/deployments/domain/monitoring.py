"""The monitoring check's rule: which of a deployment's series a Prometheus exposition holds
(pure Python, the text parsed by prometheus_client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

REQUESTS_SERIES = "moc_deployment_requests_total"


def deployment_series(text: str, *, sample: str, deployment: str) -> list[dict[str, str]]:
    """The label sets of `sample` samples whose deployment label is `deployment`. ValueError when
    the text is not a Prometheus exposition."""
    found: list[dict[str, str]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels.get("deployment") == deployment:
                found.append(dict(s.labels))
    return found
