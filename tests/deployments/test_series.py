"""Serving figures as chart points: goodput against the SLO, and points merged into coarser steps
(pure)."""

from __future__ import annotations

import pytest

from apps.deployments.domain.figures import Figures, Outcome, increments
from apps.deployments.domain.series import Point, coarsen, good_of, merged, point_of


def answered(*latencies: float, errors: int = 0) -> Figures:
    """Requests answered at these latencies, the first `errors` of them failed."""
    total = Figures(seconds=60)
    for i, latency in enumerate(latencies):
        outcome = Outcome.ERROR if i < errors else Outcome.OK
        counts, sums = increments(outcome=outcome, latency_ms=latency, tokens_out=4)
        total = total.plus(Figures.from_fields({**counts, **sums}, seconds=60))
    return total


def test_goodput_counts_the_answers_within_the_slo() -> None:
    figures = answered(*([50.0] * 90 + [900.0] * 10))

    assert good_of(figures, 200) == 90
    assert good_of(figures, None) == 100  # no SLO: every answer is good


def test_goodput_leaves_errors_out_in_proportion() -> None:
    figures = answered(*([50.0] * 100), errors=20)

    assert good_of(figures, 200) == 80


def test_a_point_of_a_minute_has_its_rates_per_second() -> None:
    point = point_of(answered(*([50.0] * 120)), t=60, slo_p99_ms=100)

    assert (point.rps, point.goodput, point.tokens_per_s) == (2.0, 2.0, 8.0)
    assert point.p99_ms == pytest.approx(50)
    assert point.to_dict()["t"] == 60


def test_merged_points_add_counts_average_medians_and_keep_the_worst_tail() -> None:
    a = Point(t=0, seconds=60, requests=30, good=30, refusals={"bulkhead_full": 1}, p50_ms=10, p99_ms=20)
    b = Point(
        t=60,
        seconds=60,
        requests=10,
        good=5,
        refusals={"bulkhead_full": 2, "queue_busy": 1},
        p50_ms=50,
        p99_ms=500,
    )

    both = merged([a, b], t=0, seconds=120)

    assert (both.requests, both.good, both.rps) == (40, 35, pytest.approx(1 / 3))
    assert both.refusals == {"bulkhead_full": 3, "queue_busy": 1}
    assert both.p50_ms == pytest.approx(20)  # (30 x 10 + 10 x 50) / 40
    assert both.p99_ms == 500
    assert both.ttft_p99_ms is None


def test_coarsen_merges_minutes_into_aligned_steps_leaving_empty_ones_out() -> None:
    points = [Point(t=t, seconds=60, requests=1) for t in (0, 60, 240, 300, 1_200)]

    steps = coarsen(points, 300)

    assert [(p.t, p.requests, p.seconds) for p in steps] == [(0, 3, 300), (300, 1, 300), (1_200, 1, 300)]
