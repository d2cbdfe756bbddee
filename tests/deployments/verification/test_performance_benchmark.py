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

# A benchmark job's baseline: its timing of the deployments' own probe, and its runs.
PROBED = {
    **BASELINE,
    "ttft_ms_p50": 20.0,  # the smallest batch's, as an old job wrote them: not read when runs are there
    "token_ms_p50": 6.0,
    "runs": [
        {"batch": 4, "prompt_tokens": 16, "ttft_ms_p50": 20.0, "token_ms_p50": 6.0},
        {"batch": 1, "prompt_tokens": 64, "ttft_ms_p50": 9.0, "token_ms_p50": 3.0},
        {"batch": 1, "prompt_tokens": 16, "ttft_ms_p50": 5.0, "token_ms_p50": 2.0},
    ],
    "probe": {"prompt": "Hello", "max_new_tokens": 4, "ms_p50": 8.0, "ms_p99": 9.5},
}


def expect(
    figures: dict[str, Any], *, prompt: str = "Hello", tokens: int | None = 4, allowance: float = 25.0
) -> Any:
    return rule.benchmark_expected(figures, prompt=prompt, new_tokens=tokens, allowance_ms=allowance)


def test_the_probe_the_benchmark_timed_is_what_a_probe_should_take_plus_the_serving_path() -> None:
    expected = expect(PROBED)

    assert expected is not None
    assert (expected.basis, expected.measured_ms, expected.allowance_ms, expected.ms) == (
        "probe",
        8.0,
        25.0,
        33.0,
    )
    what = expected.baseline().what
    assert what.startswith("the version's benchmark baseline on node-1/gpu0 of 2025-06-01")
    assert "its probe timed in the runtime, p50 8.0 ms + 25 ms for the serving path" in what
    assert expected.baseline().median_ms == 33.0


@pytest.mark.parametrize(("prompt", "tokens"), [("Hello", 8), ("Hi", 4)])
def test_a_probe_timed_for_another_request_is_not_used(prompt: str, tokens: int) -> None:
    expected = expect(PROBED, prompt=prompt, tokens=tokens)

    assert expected is not None
    assert expected.basis == "estimate"
    assert expected.measured_ms == 5.0 + (tokens - 1) * 2.0  # batch 1, the shortest prompt


def test_without_the_probe_it_is_estimated_from_the_single_short_request() -> None:
    figures = {k: v for k, v in PROBED.items() if k != "probe"}

    expected = expect(figures)

    assert expected is not None
    assert (expected.basis, expected.measured_ms, expected.note) == ("estimate", 5.0 + 3 * 2.0, "")
    assert "first token 5.0 ms + 3 × 2.0 ms a token + 25 ms for the serving path" in expected.baseline().what


def test_without_a_batch_1_run_the_smallest_batch_stands_in_and_says_so() -> None:
    runs = [run for run in PROBED["runs"] if run["batch"] != 1] + [
        {"batch": 8, "prompt_tokens": 16, "ttft_ms_p50": 40.0, "token_ms_p50": 9.0}
    ]

    expected = expect({"runs": runs})

    assert expected is not None
    assert expected.measured_ms == 20.0 + 3 * 6.0
    assert expected.note == "no run at batch 1: batch 4's figures stand in, a looser bound"
    assert expected.note in expected.baseline().what


def test_a_baseline_without_runs_is_read_by_its_top_level_figures() -> None:
    expected = expect(BASELINE, allowance=0.0)

    assert expected is not None
    assert (expected.measured_ms, expected.ms) == (5.0 + 3 * 2.0, 11.0)
    assert "serving path" not in expected.baseline().what


@pytest.mark.parametrize(
    "figures",
    [
        {},
        {"latency_ms_p50": 40.0},  # a whole request generated another number of tokens: not like a probe
        {"latency_ms_p50": 0},
        {"ttft_ms_p50": "fast", "token_ms_p50": 2.0},
        {"ttft_ms_p50": float("nan"), "token_ms_p50": 2.0},
        {"probe": {"prompt": "Hello", "max_new_tokens": 4, "ms_p50": 0.0}},
    ],
)
def test_no_figure_like_the_probe_is_no_baseline(figures: dict[str, Any]) -> None:
    assert expect(figures) is None


def test_a_probe_that_generates_nothing_has_no_benchmark_to_compare_with() -> None:
    assert expect(PROBED, tokens=None) is None


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
    [(0.010, CheckStatus.PASS), (0.030, CheckStatus.WARN), (0.100, CheckStatus.FAIL)],
)
def test_the_check_holds_the_probes_to_the_stored_baseline(
    probe_s: float, status: CheckStatus, settings: Any
) -> None:
    settings.MOC_PERF_PATH_ALLOWANCE_MS = 4.0
    model = ModelOnAClock(probe_s)

    outcome = performance.run(ctx(_release_benchmarked(BASELINE)), clock=model.clock, ask=model.ask)

    assert outcome.status == status, outcome.reason
    assert "benchmark baseline on node-1/gpu0 of 2025-06-01" in outcome.reason
    assert "15.0 ms × 1.5 = 22.5 ms" in outcome.reason
    evidence = outcome.evidence["benchmark"]
    # The probe generates 4 tokens: 5 + 3 × 2 by the benchmark, and 4 ms for the serving path.
    assert (evidence["measured_ms"], evidence["path_allowance_ms"], evidence["expected_ms"]) == (
        11.0,
        4.0,
        15.0,
    )
    assert (evidence["basis"], evidence["device"], evidence["at"]) == (
        "estimate",
        BASELINE["device"],
        BASELINE["at"],
    )
    assert outcome.evidence["release"]["p50_ms"] == probe_s * 1000


@pytest.mark.django_db
def test_the_check_holds_the_probes_to_the_benchmarks_own_probe(settings: Any) -> None:
    settings.MOC_PERF_PATH_ALLOWANCE_MS = 0.0
    # 14 ms: over the probe's own 8 ms × 1.5 (a warning), within the estimate's 11 ms × 1.5.
    model = ModelOnAClock(0.014)

    outcome = performance.run(ctx(_release_benchmarked(PROBED)), clock=model.clock, ask=model.ask)

    assert outcome.status == CheckStatus.WARN, outcome.reason
    assert "its probe timed in the runtime, p50 8.0 ms" in outcome.reason
    evidence = outcome.evidence["benchmark"]
    assert (evidence["basis"], evidence["expected_ms"], evidence["probe"]) == ("probe", 8.0, PROBED["probe"])


@pytest.mark.django_db
@pytest.mark.parametrize(("allowance_ms", "status"), [(None, CheckStatus.PASS), (0.0, CheckStatus.FAIL)])
def test_the_serving_path_allowance_keeps_a_fast_model_from_failing_on_overhead(
    allowance_ms: float | None, status: CheckStatus, settings: Any
) -> None:
    """A release as fast as its benchmark (2 ms a probe in the runtime) with 10 ms of data plane."""
    if allowance_ms is not None:
        settings.MOC_PERF_PATH_ALLOWANCE_MS = allowance_ms
    figures = {**PROBED, "probe": {**PROBED["probe"], "ms_p50": 2.0}}
    model = ModelOnAClock(0.012)

    outcome = performance.run(ctx(_release_benchmarked(figures)), clock=model.clock, ask=model.ask)

    assert outcome.status == status, outcome.reason


@pytest.mark.django_db
def test_without_a_baseline_the_check_says_so_and_judges_without_one() -> None:
    model = ModelOnAClock(0.010)
    release = release_with(1)

    outcome = performance.run(ctx(release), clock=model.clock, ask=model.ask)

    assert outcome.status == CheckStatus.WARN  # nothing else to compare with here
    assert f"no benchmark baseline: run a benchmark job on {release.model_version}" in outcome.reason
    assert outcome.evidence["benchmark"].startswith("no benchmark baseline")


@pytest.mark.django_db
def test_a_baseline_with_nothing_like_the_probe_says_so() -> None:
    model = ModelOnAClock(0.010)
    release = _release_benchmarked({"latency_ms_p50": 40.0, "latency_ms_p99": 55.0})

    outcome = performance.run(ctx(release), clock=model.clock, ask=model.ask)

    assert outcome.status == CheckStatus.WARN
    assert (
        f"the benchmark baseline of {release.model_version} has no figure like this probe" in outcome.reason
    )
