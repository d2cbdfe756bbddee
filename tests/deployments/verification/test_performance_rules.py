"""The performance check's rule (apps.deployments.domain.performance): pure, no database."""

from __future__ import annotations

import pytest

from apps.deployments.domain.figures import BUCKETS, Figures, bucket_of
from apps.deployments.domain.performance import judge, p99_of


def test_p99_of_probes_is_bucketed_like_live_figures() -> None:
    p99 = p99_of([10.0] * 99 + [900.0])
    assert p99 is not None
    assert 7.5 < p99 <= 10.0
    assert p99_of([]) is None


@pytest.mark.parametrize("latency_ms", [12.3, 1_001.0, 4_321.0])
def test_probes_read_the_p99_that_live_figures_of_the_same_latencies_read(latency_ms: float) -> None:
    """Live figures keep each bucket's latency sum; probes estimated from counts alone would read
    requests all at 1001 ms as a p99 near the bucket's upper bound, 1100 ms."""
    latencies = [latency_ms] * 100
    counts, sums = [0] * BUCKETS, [0.0] * BUCKETS
    for latency in latencies:
        counts[bucket_of(latency)] += 1
        sums[bucket_of(latency)] += latency
    live = Figures(requests=100, buckets=tuple(counts), sums_ms=tuple(sums))

    p99 = p99_of(latencies)

    assert p99 == live.p99_ms
    assert p99 is not None
    assert latency_ms <= p99 <= latency_ms * 1.05


def test_a_p99_within_stables_bound_and_the_objective_passes() -> None:
    verdict = judge(p99_ms=40.0, stable_p99_ms=30.0, ratio_max=1.5, slo_p99_ms=100.0)
    assert verdict.status == "pass"
    assert "45.0 ms" in verdict.reason


def test_a_p99_over_stables_bound_fails_with_the_numbers() -> None:
    verdict = judge(p99_ms=50.0, stable_p99_ms=30.0, ratio_max=1.5, slo_p99_ms=None)
    assert verdict.status == "fail"
    assert "50.0 ms against stable's 30.0 ms × 1.5 = 45.0 ms" in verdict.reason


def test_a_p99_over_the_objective_fails_even_without_stable() -> None:
    verdict = judge(p99_ms=150.0, stable_p99_ms=None, ratio_max=1.5, slo_p99_ms=100.0)
    assert verdict.status == "fail"
    assert "objective 100 ms" in verdict.reason


@pytest.mark.parametrize("p99", [1.0, 10_000.0])
def test_nothing_to_compare_with_is_a_warning_never_a_pass(p99: float) -> None:
    verdict = judge(p99_ms=p99, stable_p99_ms=None, ratio_max=1.5, slo_p99_ms=None)
    assert verdict.status == "warn"
    assert "nothing to compare" in verdict.reason
