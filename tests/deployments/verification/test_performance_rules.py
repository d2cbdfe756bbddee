"""The performance check's rule (apps.deployments.domain.performance): pure, no database."""

from __future__ import annotations

import pytest

from apps.deployments.domain.figures import BUCKETS, Figures, bucket_of
from apps.deployments.domain.performance import (
    SAMPLES,
    judge,
    latencies,
    live,
    paired,
    quantile_of,
    too_slow,
)

STEADY = [24.0, 25.0, 26.0, 24.5, 25.5] * 4  # 20 probes, median about 25 ms
assert len(STEADY) == SAMPLES


def figures_of(latencies_ms: list[float]) -> Figures:
    """Live figures of these latencies, recorded as the web processes record them."""
    counts, sums = [0] * BUCKETS, [0.0] * BUCKETS
    for latency in latencies_ms:
        counts[bucket_of(latency)] += 1
        sums[bucket_of(latency)] += latency
    return Figures(requests=len(latencies_ms), buckets=tuple(counts), sums_ms=tuple(sums))


def test_quantiles_of_probes_are_bucketed_like_live_figures() -> None:
    p99 = quantile_of([10.0] * 99 + [900.0], 0.99)
    assert p99 is not None
    assert 7.5 < p99 <= 10.0
    assert quantile_of([], 0.5) is None


@pytest.mark.parametrize("latency_ms", [12.3, 1_001.0, 4_321.0])
def test_probes_read_the_quantiles_that_live_figures_of_the_same_latencies_read(latency_ms: float) -> None:
    """Live figures keep each bucket's latency sum; probes estimated from counts alone would read
    requests all at 1001 ms as a p99 near the bucket's upper bound, 1100 ms."""
    latencies_ms = [latency_ms] * 100
    live_figures = figures_of(latencies_ms)

    assert quantile_of(latencies_ms, 0.99) == live_figures.p99_ms
    assert quantile_of(latencies_ms, 0.5) == live_figures.p50_ms
    p99 = quantile_of(latencies_ms, 0.99)
    assert p99 is not None
    assert latency_ms <= p99 <= latency_ms * 1.05


# (release's probes, stable's alternated probes, objective, status)
CASES = [
    pytest.param(STEADY, STEADY, None, "pass", id="identical"),
    # The false alarm this rule replaces: one cold first inference made the p99 of 20 probes.
    pytest.param([250.0] + STEADY[1:], STEADY, None, "pass", id="identical, one cold outlier"),
    pytest.param([250.0] + STEADY[1:], STEADY, 100.0, "pass", id="one outlier over the objective"),
    pytest.param([250.0, 250.0] + STEADY[2:], STEADY, 100.0, "pass", id="two outliers over the objective"),
    pytest.param([250.0] * 3 + STEADY[3:], STEADY, 100.0, "fail", id="three over the objective"),
    pytest.param([x * 2 for x in STEADY], STEADY, None, "fail", id="2x slower median"),
    pytest.param([x * 1.4 for x in STEADY], STEADY, None, "pass", id="1.4x slower median, bound 1.5x"),
    pytest.param([x * 12 for x in STEADY], STEADY, 1_000.0, "fail", id="12x slower, within the objective"),
    pytest.param(STEADY, [x * 3 for x in STEADY], 20.0, "fail", id="faster than stable, over the objective"),
]


@pytest.mark.parametrize(("release_ms", "stable_ms", "slo_p99_ms", "status"), CASES)
def test_the_release_median_against_stables_and_its_tail_against_the_objective(
    release_ms: list[float], stable_ms: list[float], slo_p99_ms: float | None, status: str
) -> None:
    verdict = judge(release_ms=release_ms, baseline=paired(stable_ms), ratio_max=1.5, slo_p99_ms=slo_p99_ms)
    assert verdict.status == status, verdict.reason


def test_the_reason_gives_the_medians_the_bound_and_both_p99s() -> None:
    slower = [x * 2 for x in STEADY]
    verdict = judge(release_ms=slower, baseline=paired(STEADY), ratio_max=1.5, slo_p99_ms=None)
    release, stable = latencies(slower), latencies(STEADY)
    assert verdict.reason == (
        f"median {release.median_ms:.1f} ms against stable's median of 20 alternated probes, "
        f"{stable.median_ms:.1f} ms × 1.5 = {stable.median_ms * 1.5:.1f} ms "
        f"(p99 {release.p99_ms:.1f} ms, stable's {stable.p99_ms:.1f} ms)"
    )


def test_the_tail_is_the_p90_and_named_so() -> None:
    verdict = judge(release_ms=[250.0] * 3 + STEADY[3:], baseline=None, ratio_max=1.5, slo_p99_ms=100.0)
    assert verdict.status == "fail"
    assert verdict.reason.startswith("p90 of 20 probes ")
    assert verdict.reason.endswith(" ms against the objective 100 ms")


def test_no_quantile_of_the_probes_reads_past_the_slowest() -> None:
    """A lone slow probe's bucket interpolates about its mean, past it: 317 ms would read 324.8."""
    summary = latencies([317.0] + STEADY[1:])
    assert summary.p99_ms == summary.max_ms == 317.0
    assert 24.0 <= summary.median_ms <= summary.tail_ms <= 26.0


def test_fewer_probes_than_the_rule_needs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        judge(release_ms=STEADY[:-1], baseline=None, ratio_max=1.5, slo_p99_ms=100.0)
    with pytest.raises(ValueError, match="at least 20"):
        paired(STEADY[:-1])


def test_stables_live_figures_compare_their_p50_with_the_release_median() -> None:
    baseline = live(figures_of([25.0] * 400 + [900.0] * 10), min_requests=20)
    assert baseline is not None
    assert baseline.median_ms == pytest.approx(25.0, rel=0.05)
    assert baseline.what == "stable's live p50 over 410 requests"

    verdict = judge(release_ms=[40.0] * 20, baseline=baseline, ratio_max=1.5, slo_p99_ms=None)

    assert verdict.status == "fail"
    assert "against stable's live p50 over 410 requests" in verdict.reason


def test_too_few_live_requests_are_no_baseline() -> None:
    assert live(figures_of([25.0] * 19), min_requests=20) is None
    assert live(Figures(), min_requests=0) is None


@pytest.mark.parametrize("latency_ms", [1.0, 10_000.0])
def test_nothing_to_compare_with_is_a_warning_never_a_pass(latency_ms: float) -> None:
    verdict = judge(release_ms=[latency_ms] * 20, baseline=None, ratio_max=1.5, slo_p99_ms=None)
    assert verdict.status == "warn"
    assert "nothing to compare" in verdict.reason


def test_too_few_probes_in_the_checks_time_are_a_warning_saying_what_would_fit_them() -> None:
    verdict = too_slow(timed=12, probes=52, probe_ms=2_500.0, seconds=80.0)
    assert verdict.status == "warn"
    assert verdict.reason == (
        "too slow to judge: 12 of 20 probes a side timed in the 80 s the check has, about 2500 ms a "
        "probe; the 52 probes it takes, warm-ups of each replica included, would need about 130 s: a "
        "longer timeout for the check or fewer replicas would let it judge"
    )
