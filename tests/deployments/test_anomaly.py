"""The anomaly rule: a figure's last minutes against its own baseline (pure)."""

from __future__ import annotations

import pytest

from apps.deployments.domain.anomaly import Rule, anomalies
from apps.deployments.domain.series import Point

NOW = 1_700_000_040  # a minute's end


def minutes(recent: list[float | None], baseline: list[float | None], **fields: object) -> list[Point]:
    """Per-minute points whose p99 latency is each value: `baseline` for the hour before the last
    five minutes (oldest first), `recent` for those five; 60 requests a minute."""
    values = [*baseline, *recent]
    start = NOW - 60 * len(values)
    return [
        Point(t=start + 60 * i, seconds=60, requests=60, p99_ms=v, **fields)  # type: ignore[arg-type]
        for i, v in enumerate(values)
    ]


def steady(n: int = 60) -> list[float | None]:
    return [40.0 + i % 3 for i in range(n)]  # 40, 41 or 42 ms


def test_a_figure_far_above_its_baseline_is_flagged_with_what_moved_and_why() -> None:
    [moved] = anomalies(minutes([300.0] * 5, steady()), now=NOW)

    assert (moved.figure, moved.direction) == ("p99_ms", "up")
    assert (moved.recent, moved.baseline) == (300.0, 41.0)
    assert moved.change == pytest.approx(300 / 41 - 1)
    assert moved.score is not None
    assert moved.score > 4
    assert "p99 latency rose to 300.0 ms" in moved.reason
    assert "median of 41.0 ms" in moved.reason


def test_a_figure_that_fell_is_flagged_down() -> None:
    [moved] = anomalies(minutes([5.0] * 5, steady()), now=NOW)

    assert (moved.figure, moved.direction) == ("p99_ms", "down")


def test_a_figure_within_its_usual_spread_is_not_flagged() -> None:
    assert anomalies(minutes([42.0] * 5, steady()), now=NOW) == []


def test_a_move_smaller_than_the_figures_least_is_not_flagged_even_on_a_flat_baseline() -> None:
    """The baseline never varied (MAD 0): 2 ms more is under p99's smallest move worth telling."""
    assert anomalies(minutes([42.0] * 5, [40.0] * 60), now=NOW) == []


def test_a_flat_baseline_that_jumps_is_flagged_without_a_score() -> None:
    [moved] = anomalies(minutes([90.0] * 5, [40.0] * 60), now=NOW)

    assert moved.score is None
    assert "did not vary" in moved.reason


def test_one_odd_minute_does_not_move_the_median() -> None:
    assert anomalies(minutes([41.0, 900.0, 41.0, 40.0, 42.0], steady()), now=NOW) == []


def test_too_few_minutes_judge_nothing() -> None:
    assert anomalies(minutes([300.0] * 2, steady()), now=NOW) == []  # 2 recent of 3
    assert anomalies(minutes([300.0] * 5, steady(10)), now=NOW) == []  # 10 in the baseline of 20


def test_minutes_without_the_figure_are_no_samples() -> None:
    """Embeddings measure no time to first token: it is never judged, and so never flagged."""
    points = minutes([300.0] * 5, steady())

    assert [a.figure for a in anomalies(points, now=NOW)] == ["p99_ms"]


def test_minutes_outside_the_windows_are_left_out() -> None:
    late = [*minutes([300.0] * 5, steady()), Point(t=NOW, seconds=60, requests=60, p99_ms=5.0)]

    assert [a.recent for a in anomalies(late, now=NOW)] == [300.0]


def test_the_rule_can_be_made_stricter() -> None:
    assert anomalies(minutes([60.0] * 5, steady()), now=NOW)
    assert anomalies(minutes([60.0] * 5, steady()), now=NOW, rule=Rule(min_change=0.5)) == []
