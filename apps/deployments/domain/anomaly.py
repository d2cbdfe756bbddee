"""Which of a deployment's serving figures drifted from their own recent baseline (pure Python).

The rule, per figure: the median of its per-minute values over the last `recent_s` against the
median and the median absolute deviation (MAD) of its per-minute values over the `baseline_s`
before. A figure moved when its recent median is more than `threshold` scaled MADs (1.4826 × MAD,
which is one standard deviation for normal data) from the baseline's median, and by at least
`min_change` of the baseline's median and at least the figure's own smallest move worth telling
(so that a flat baseline, MAD 0, does not flag a jitter of a millisecond). Too few minutes on
either side (`min_recent`, `min_baseline`) judge nothing.

Only minutes that had traffic count as samples: a deployment going quiet is not this rule's to
flag (the alert rules watch request rates), and a figure nothing measured (TTFT of embeddings) is
never judged.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from apps.deployments.domain.series import Point

# 1.4826 × MAD estimates the standard deviation of normally distributed values.
_MAD_SCALE = 1.4826


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    label: str
    unit: str
    read: Callable[[Point], float | None]
    # The smallest move worth telling, in the figure's unit.
    min_delta: float


FIGURES: tuple[Figure, ...] = (
    Figure("rps", "requests per second", "/s", lambda p: p.rps, 0.5),
    Figure("error_rate", "error rate", "", lambda p: p.error_rate, 0.01),
    Figure("p99_ms", "p99 latency", "ms", lambda p: p.p99_ms, 5.0),
    Figure("ttft_p99_ms", "p99 time to first token", "ms", lambda p: p.ttft_p99_ms, 5.0),
    Figure("itl_p99_ms", "p99 inter-token latency", "ms", lambda p: p.itl_p99_ms, 2.0),
    Figure("queue_p99_ms", "p99 queue wait", "ms", lambda p: p.queue_p99_ms, 5.0),
    Figure("tokens_per_s", "output tokens per second", "/s", lambda p: p.tokens_per_s, 5.0),
)


@dataclass(frozen=True, slots=True)
class Rule:
    recent_s: int = 300
    baseline_s: int = 3_600
    min_recent: int = 3  # minutes with a value in the recent span
    min_baseline: int = 20  # ...and in the baseline
    threshold: float = 4.0  # scaled MADs
    min_change: float = 0.25  # of the baseline's median


@dataclass(frozen=True, slots=True)
class Anomaly:
    figure: str
    direction: str  # "up" or "down"
    recent: float  # the recent median
    baseline: float  # the baseline's median
    mad: float
    # How many scaled MADs the recent median is from the baseline's; None when the baseline
    # did not vary (MAD 0).
    score: float | None
    change: float | None  # relative to the baseline's median; None when that is 0
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "direction": self.direction,
            "recent": self.recent,
            "baseline": self.baseline,
            "mad": self.mad,
            "score": self.score,
            "change": self.change,
            "reason": self.reason,
        }


def _fmt(value: float, unit: str) -> str:
    if not unit:
        return f"{value:.1%}"
    return f"{value:.1f} ms" if unit == "ms" else f"{value:.2f}{unit}"


def judge(figure: Figure, points: Sequence[Point], *, now: int, rule: Rule) -> Anomaly | None:
    """The figure's drift over the points (one per minute, any order), or None."""
    split = now - rule.recent_s
    recent, baseline = [], []
    for p in points:
        value = figure.read(p)
        if value is None:
            continue
        if split <= p.t < now:
            recent.append(value)
        elif split - rule.baseline_s <= p.t < split:
            baseline.append(value)
    if len(recent) < rule.min_recent or len(baseline) < rule.min_baseline:
        return None
    now_median, base_median = statistics.median(recent), statistics.median(baseline)
    mad = statistics.median(abs(v - base_median) for v in baseline)
    delta = now_median - base_median
    if abs(delta) < max(figure.min_delta, rule.min_change * abs(base_median)):
        return None
    scale = _MAD_SCALE * mad
    score = abs(delta) / scale if scale > 0 else None
    if score is not None and score < rule.threshold:
        return None
    change = delta / base_median if base_median else None
    moved = "rose" if delta > 0 else "fell"
    by = f" ({change:+.0%}" if change is not None else " ("
    spread = f"{score:.1f} MADs" if score is not None else "its baseline did not vary"
    return Anomaly(
        figure=figure.name,
        direction="up" if delta > 0 else "down",
        recent=now_median,
        baseline=base_median,
        mad=mad,
        score=score,
        change=change,
        reason=f"{figure.label} {moved} to {_fmt(now_median, figure.unit)} over the last "
        f"{rule.recent_s // 60} minutes from a median of {_fmt(base_median, figure.unit)}"
        f"{by}{', ' if change is not None else ''}{spread})",
    )


def anomalies(points: Sequence[Point], *, now: int, rule: Rule | None = None) -> list[Anomaly]:
    """Every figure that moved (FIGURES' order), judged over per-minute points up to `now`."""
    rule = rule or Rule()
    found = (judge(figure, points, now=now, rule=rule) for figure in FIGURES)
    return [a for a in found if a is not None]
