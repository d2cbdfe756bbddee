"""Canary analysis rules (pure): successful, failed or inconclusive, as Argo Rollouts defines them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from apps.deployments.domain.analysis import Outcome, Rules, analyse
from apps.deployments.domain.figures import BUCKETS, Figures, Histogram, bucket_of


def figures(requests: int, errors: int = 0, latency_ms: float = 20.0, rejected: int = 0) -> Figures:
    buckets = [0] * BUCKETS
    buckets[bucket_of(latency_ms)] = requests
    return Figures(requests=requests, errors=errors, rejected=rejected, buckets=tuple(buckets), seconds=60)


RULES = Rules(
    min_samples=20, max_error_rate=0.05, max_p99_ms=500, error_rate_delta_max=0.02, p99_ratio_max=1.5
)
ABSOLUTE_ONLY = Rules(min_samples=20, max_error_rate=0.05, max_p99_ms=500)
RELATIVE_ONLY = Rules(min_samples=20, error_rate_delta_max=0.02, p99_ratio_max=1.5)
S, F, N = Outcome.SUCCESSFUL, Outcome.FAILED, Outcome.INCONCLUSIVE  # N: not enough to judge


@pytest.mark.parametrize(
    ("case", "canary", "stable", "rules", "error_rate", "p99", "rejected", "overall"),
    [
        ("healthy canary", figures(100), figures(100), RULES, S, S, S, S),
        ("no data is never success", figures(0), figures(100), RULES, N, N, N, N),
        ("too few canary requests", figures(19, errors=19), figures(100), RULES, N, N, N, N),
        ("errors over the SLO", figures(100, errors=10), figures(100, errors=10), ABSOLUTE_ONLY, F, S, N, F),
        (
            "errors over stable + delta",
            figures(100, errors=5),
            figures(100, errors=1),
            RELATIVE_ONLY,
            F,
            S,
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
            S,
        ),
        (
            "p99 over the SLO",
            figures(100, latency_ms=900),
            figures(100, latency_ms=900),
            ABSOLUTE_ONLY,
            S,
            F,
            N,
            F,
        ),
        (
            "p99 over stable x ratio",
            figures(100, latency_ms=400),
            figures(100, latency_ms=100),
            RELATIVE_ONLY,
            S,
            F,
            S,
            F,
        ),
        # A canary rejecting no more than the delta is within stable's rate + delta, whatever it is.
        ("relative needs stable samples", figures(100), figures(5), RELATIVE_ONLY, N, N, S, N),
        ("relative without stable at all", figures(100), None, RELATIVE_ONLY, N, N, S, N),
        ("absolute judges without stable", figures(100), None, RULES, S, S, S, S),
        (
            "absolute breach judged even if stable is thin",
            figures(100, errors=50),
            figures(3),
            RULES,
            F,
            S,
            S,
            F,
        ),
        ("no bound set at all", figures(100), figures(100), Rules(min_samples=20), N, N, N, N),
        (
            "failed beats inconclusive",
            figures(100, latency_ms=900),
            figures(2),
            Rules(max_p99_ms=500),
            N,
            F,
            N,
            F,
        ),
        # Input the model refused: judged beside stable only, never against the error-rate SLO.
        (
            "rejections alike on both sides",
            figures(70, rejected=30),
            figures(700, rejected=300),
            RULES,
            S,
            S,
            S,
            S,
        ),
        ("rejecting what stable accepts", figures(70, rejected=30), figures(1_000), RULES, S, S, F, F),
        ("rejecting everything", figures(0, rejected=40), figures(1_000), RULES, N, N, F, F),
        ("rejections no SLO judges", figures(50, rejected=50), figures(100), ABSOLUTE_ONLY, S, S, N, N),
        ("rejections over the delta, stable thin", figures(70, rejected=30), figures(5), RULES, S, S, N, N),
        (
            "rejected samples count asked requests",
            figures(10, rejected=10),
            figures(1_000),
            RULES,
            N,
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
    rejected: Outcome,
    overall: Outcome,
) -> None:
    result = analyse(canary, stable, rules)

    by_name = {m.name: m.outcome for m in result.metrics}
    got = (by_name["error_rate"], by_name["p99_ms"], by_name["rejected_rate"], result.outcome)
    assert got == (error_rate, p99, rejected, overall), case


def test_the_rejected_input_rate_is_never_held_to_an_absolute_limit() -> None:
    """Half the canary's input rejected, as much as stable's, with a 5% error-rate SLO: successful,
    and the only limit it was judged by is stable's rate + the delta."""
    result = analyse(figures(50, rejected=50), figures(500, rejected=500), RULES)

    rejected = next(m for m in result.metrics if m.name == "rejected_rate")
    assert result.outcome == S
    assert (rejected.value, rejected.stable_value, rejected.samples, rejected.stable_samples) == (
        0.5,
        0.5,
        100,
        1_000,
    )
    assert rejected.thresholds == pytest.approx({"relative": 0.52})


def test_a_canary_rejecting_what_stable_accepts_says_so() -> None:
    result = analyse(figures(90, rejected=10), figures(1_000, rejected=10), RULES)

    assert result.outcome == F
    assert result.reason == "rejected_rate 10.00% is over its relative limit 2.99% (stable 0.99%)"


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
    assert [m["name"] for m in details["metrics"]] == ["error_rate", "p99_ms", "rejected_rate"]
    assert details["metrics"][1]["thresholds"]["absolute"] == 500


# ---- time to first token ---------------------------------------------------------------------


def generating(requests: int, ttft_ms: float) -> Figures:
    """Requests at 20 ms end to end whose first token came after `ttft_ms`."""
    counts = [0] * BUCKETS
    counts[bucket_of(ttft_ms)] = requests
    sums = [0.0] * BUCKETS
    sums[bucket_of(ttft_ms)] = ttft_ms * requests
    return replace(figures(requests), ttft=Histogram(counts=tuple(counts), sums_ms=tuple(sums)))


def test_a_canary_whose_first_token_is_slower_than_stables_fails_on_ttft() -> None:
    analysis = analyse(generating(100, 400), generating(100, 100), RULES)

    by_name = {m.name: m for m in analysis.metrics}
    assert analysis.outcome == F
    assert by_name["ttft_p99_ms"].outcome == F
    assert by_name["ttft_p99_ms"].thresholds == {"relative": pytest.approx(150, rel=0.05)}
    assert by_name["p99_ms"].outcome == S


def test_a_canary_whose_first_token_is_as_fast_as_stables_passes_on_ttft() -> None:
    analysis = analyse(generating(100, 100), generating(100, 100), RULES)

    assert analysis.outcome == S
    assert {m.name: m.outcome for m in analysis.metrics}["ttft_p99_ms"] == S


@pytest.mark.parametrize(
    ("canary", "stable"),
    [(figures(100), figures(100)), (generating(100, 400), figures(100)), (figures(100), generating(100, 1))],
)
def test_ttft_is_judged_only_when_both_sides_measured_it(canary: Figures, stable: Figures) -> None:
    """Embeddings make no token: without TTFT on either side the metric is left out, not
    inconclusive (which would hold every step of such a deployment)."""
    analysis = analyse(canary, stable, RULES)

    assert "ttft_p99_ms" not in {m.name for m in analysis.metrics}
    assert analysis.outcome == S
