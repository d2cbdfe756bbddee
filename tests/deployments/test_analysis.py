"""Canary analysis rules (pure): successful, failed or inconclusive, as Argo Rollouts defines them."""

from __future__ import annotations

import pytest

from apps.deployments.domain.analysis import Outcome, Rules, analyse
from apps.deployments.domain.figures import BUCKETS, Figures, bucket_of


def figures(requests: int, errors: int = 0, latency_ms: float = 20.0) -> Figures:
    buckets = [0] * BUCKETS
    buckets[bucket_of(latency_ms)] = requests
    return Figures(requests=requests, errors=errors, buckets=tuple(buckets), seconds=60)


RULES = Rules(
    min_samples=20, max_error_rate=0.05, max_p99_ms=500, error_rate_delta_max=0.02, p99_ratio_max=1.5
)
ABSOLUTE_ONLY = Rules(min_samples=20, max_error_rate=0.05, max_p99_ms=500)
RELATIVE_ONLY = Rules(min_samples=20, error_rate_delta_max=0.02, p99_ratio_max=1.5)
S, F, N = Outcome.SUCCESSFUL, Outcome.FAILED, Outcome.INCONCLUSIVE  # N: not enough to judge


@pytest.mark.parametrize(
    ("case", "canary", "stable", "rules", "error_rate", "p99", "overall"),
    [
        ("healthy canary", figures(100), figures(100), RULES, S, S, S),
        ("no data is never success", figures(0), figures(100), RULES, N, N, N),
        ("too few canary requests", figures(19, errors=19), figures(100), RULES, N, N, N),
        ("errors over the SLO", figures(100, errors=10), figures(100, errors=10), ABSOLUTE_ONLY, F, S, F),
        (
            "errors over stable + delta",
            figures(100, errors=5),
            figures(100, errors=1),
            RELATIVE_ONLY,
            F,
            S,
            F,
        ),
        (
            "errors within stable + delta",
            figures(100, errors=2),
            figures(100, errors=1),
            RELATIVE_ONLY,
            S,
            S,
            S,
        ),
        (
            "p99 over the SLO",
            figures(100, latency_ms=900),
            figures(100, latency_ms=900),
            ABSOLUTE_ONLY,
            S,
            F,
            F,
        ),
        (
            "p99 over stable x ratio",
            figures(100, latency_ms=400),
            figures(100, latency_ms=100),
            RELATIVE_ONLY,
            S,
            F,
            F,
        ),
        ("relative needs stable samples", figures(100), figures(5), RELATIVE_ONLY, N, N, N),
        ("relative without stable at all", figures(100), None, RELATIVE_ONLY, N, N, N),
        ("absolute judges without stable", figures(100), None, ABSOLUTE_ONLY, S, S, S),
        (
            "absolute breach judged even if stable is thin",
            figures(100, errors=50),
            figures(3),
            RULES,
            F,
            S,
            F,
        ),
        ("no bound set at all", figures(100), figures(100), Rules(min_samples=20), N, N, N),
        (
            "failed beats inconclusive",
            figures(100, latency_ms=900),
            figures(2),
            Rules(max_p99_ms=500),
            N,
            F,
            F,
        ),
    ],
)
def test_analysis_outcomes(
    case: str,
    canary: Figures,
    stable: Figures | None,
    rules: Rules,
    error_rate: Outcome,
    p99: Outcome,
    overall: Outcome,
) -> None:
    result = analyse(canary, stable, rules)

    by_name = {m.name: m.outcome for m in result.metrics}
    assert (by_name["error_rate"], by_name["p99_ms"], result.outcome) == (error_rate, p99, overall), case


def test_a_metric_result_carries_its_values_thresholds_and_reason() -> None:
    result = analyse(figures(100, errors=5), figures(100, errors=1), RULES)

    error_rate = next(m for m in result.metrics if m.name == "error_rate")
    assert (error_rate.value, error_rate.stable_value) == (0.05, 0.01)
    assert error_rate.thresholds == pytest.approx({"absolute": 0.05, "relative": 0.03})
    assert error_rate.reason == "error_rate 5.00% is over its relative limit 3.00% (stable 1.00%)"
    assert result.reason == error_rate.reason


def test_an_inconclusive_metric_says_how_many_requests_were_missing() -> None:
    result = analyse(figures(7), figures(100), RULES)

    assert "error_rate: 7 of 20 requests needed on the canary" in result.reason


def test_analysis_details_are_plain_json() -> None:
    details = analyse(figures(100), figures(100), RULES).to_details()

    assert details["outcome"] == "successful"
    assert [m["name"] for m in details["metrics"]] == ["error_rate", "p99_ms"]
    assert details["metrics"][1]["thresholds"]["absolute"] == 500
