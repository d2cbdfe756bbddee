"""The performance check against the version's benchmark baseline (ModelVersion.benchmark, written by
benchmark jobs): the rule (pure) and the check reading a stored baseline, probes timed on a model's
own clock (no waiting)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.deployments.domain import performance as rule
from apps.deployments.domain.checks import CheckStatus
from apps.deployments.verification.checks import performance
from apps.models.models import ModelVersion
from tests.deployments.verification.test_checks import ModelOnAClock, ctx, release_with

BASELINE = {
    "at": "2025-06-01T10:00:00+00:00",
    "job": 12,
    "device": {"label": "node-1/gpu0", "kind": "gpu", "simulated": True},
    "ttft_ms_p50": 5.0,
    "token_ms_p50": 2.0,
    "latency_ms_p50": 40.0,
    "latency_ms_p99": 55.0,
}


# the rule


def test_the_expected_latency_is_the_first_token_and_a_token_for_each_further_one() -> None:
    expected = rule.benchmark_expected(BASELINE, new_tokens=4)

    assert expected is not None
    assert (expected.median_ms, expected.p99_ms) == (5.0 + 3 * 2.0, 55.0)
    assert "benchmark baseline on node-1/gpu0 of 2025-06-01" in expected.what


def test_without_per_token_figures_a_whole_requests_p50_is_expected() -> None:
    figures = {"latency_ms_p50": 40.0}

    for tokens in (4, None):
        expected = rule.benchmark_expected(figures, new_tokens=tokens)
        assert expected is not None
        assert expected.median_ms == 40.0


@pytest.mark.parametrize(
    "figures", [{}, {"latency_ms_p50": 0}, {"latency_ms_p50": "fast"}, {"ttft_ms_p50": float("nan")}]
)
def test_no_usable_figure_is_no_baseline(figures: dict[str, Any]) -> None:
    assert rule.benchmark_expected(figures, new_tokens=4) is None


@pytest.mark.parametrize(
    ("median_ms", "status"), [(10.0, "pass"), (16.4, "pass"), (20.0, "warn"), (32.0, "warn"), (34.0, "fail")]
)
def test_a_median_over_the_bound_warns_and_fails_over_twice_it(median_ms: float, status: str) -> None:
    benchmark = rule.Baseline(11.0, None, "the version's benchmark baseline")  # bound 16.5 ms at 1.5

    verdict = rule.judge(
        release_ms=[median_ms] * rule.SAMPLES,
        baseline=None,
        ratio_max=1.5,
        slo_p99_ms=None,
        benchmark=benchmark,
    )

    assert verdict.status == status, verdict.reason
    assert "against the version's benchmark baseline, 11.0 ms × 1.5 = 16.5 ms" in verdict.reason


def test_a_failing_stable_comparison_is_not_hidden_by_a_passing_benchmark() -> None:
    verdict = rule.judge(
        release_ms=[10.0] * rule.SAMPLES,
        baseline=rule.Baseline(5.0, None, "stable's median of 20 alternated probes"),
        ratio_max=1.5,
        slo_p99_ms=None,
        benchmark=rule.Baseline(11.0, None, "the version's benchmark baseline"),
    )

    assert verdict.status == "fail"
    assert "stable's median" in verdict.reason


# the check


def _release_benchmarked(figures: dict[str, Any]) -> Any:
    release = release_with(1)
    ModelVersion.objects.filter(pk=release.model_version_id).update(benchmark=figures)
    return release


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("probe_s", "status"),
    [(0.010, CheckStatus.PASS), (0.020, CheckStatus.WARN), (0.100, CheckStatus.FAIL)],
)
def test_the_check_holds_the_probes_to_the_stored_baseline(probe_s: float, status: CheckStatus) -> None:
    model = ModelOnAClock(probe_s)

    outcome = performance.run(ctx(_release_benchmarked(BASELINE)), clock=model.clock, ask=model.ask)

    assert outcome.status == status, outcome.reason
    assert "benchmark baseline on node-1/gpu0 of 2025-06-01" in outcome.reason
    evidence = outcome.evidence["benchmark"]
    assert evidence["expected_ms"] == 11.0  # the probe generates 4 tokens: 5 + 3 × 2
    assert (evidence["device"], evidence["at"], evidence["latency_ms_p50"]) == (
        BASELINE["device"],
        BASELINE["at"],
        40.0,
    )
    assert outcome.evidence["release"]["p50_ms"] == probe_s * 1000


@pytest.mark.django_db
def test_without_a_baseline_the_check_says_so_and_judges_without_one() -> None:
    model = ModelOnAClock(0.010)
    release = release_with(1)

    outcome = performance.run(ctx(release), clock=model.clock, ask=model.ask)

    assert outcome.status == CheckStatus.WARN  # nothing else to compare with here
    assert f"no benchmark baseline: run a benchmark job on {release.model_version}" in outcome.reason
    assert outcome.evidence["benchmark"].startswith("no benchmark baseline")
