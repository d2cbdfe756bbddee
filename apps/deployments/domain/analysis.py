"""Canary analysis: does the canary's step window show it is as good as stable? (pure Python)

Outcomes as Argo Rollouts defines them. Each metric is judged by the bounds it can check: an
absolute bound (the deployment's SLO) needs min_samples requests on the canary; a bound relative
to stable needs min_samples on stable too. A metric is *failed* if any bound it could check is
breached, *inconclusive* if it could check none ("no data" never counts as success), else
*successful*. The analysis is failed if any metric failed, inconclusive if any is inconclusive,
else successful.

The rejected-input rate (input the model refused after the API's checks: mostly the caller's
doing, and both sides get alike) has no absolute bound: it fails only a canary that rejects more
than stable by over error_rate_delta_max, as one that refuses what stable accepts does. That limit
is at least error_rate_delta_max whatever stable's rate, so a canary that rejected no more than
that is within it without stable's samples (else a thin stable would leave every such step
inconclusive, where the absolute bounds judge the rest).

Metrics are a list (METRICS). Time to first token is judged like p99 latency against stable's
(its p99 at most p99_ratio_max x stable's; no absolute bound), and only when both sides measured
it: a deployment that generates no text (embeddings), or a window where one side did not, leaves
it out rather than making every step inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from apps.deployments.domain.figures import Figures


class Outcome(StrEnum):
    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class Rules:
    """What the canary is held to; a bound left None is not checked."""

    min_samples: int = 20
    max_error_rate: float | None = None  # absolute: the deployment's slo_error_rate
    max_p99_ms: float | None = None  # absolute: the deployment's slo_p99_ms
    error_rate_delta_max: float | None = None  # relative: at most stable's error rate + this
    p99_ratio_max: float | None = None  # relative: at most stable's p99 x this


@dataclass(frozen=True, slots=True)
class Metric:
    """One figure the analysis judges: how to read it, and its absolute and relative limits."""

    name: str
    unit: str
    read: Callable[[Figures], float | None]
    absolute: Callable[[Rules], float | None]
    # The limit relative to stable's value, or None when the rules set no relative bound.
    relative: Callable[[Rules, float], float | None]
    # The requests the metric is read over (its samples, for min_samples).
    samples: Callable[[Figures], int] = lambda f: f.requests
    # The least the relative limit can be, whatever stable's value: a value within it passes
    # without stable's samples. None: the relative bound always needs them.
    relative_floor: Callable[[Rules], float | None] = lambda r: None
    # Whether the window can judge the metric at all (canary's figures, stable's); one that
    # cannot is left out of the analysis.
    applies: Callable[[Figures, Figures | None], bool] = lambda canary, stable: True


def _plus(bound: float | None, stable: float) -> float | None:
    return None if bound is None else stable + bound


def _times(bound: float | None, stable: float) -> float | None:
    return None if bound is None else stable * bound


METRICS: tuple[Metric, ...] = (
    Metric(
        name="error_rate",
        unit="",
        read=lambda f: f.error_rate,
        absolute=lambda r: r.max_error_rate,
        relative=lambda r, s: _plus(r.error_rate_delta_max, s),
    ),
    Metric(
        name="p99_ms",
        unit="ms",
        read=lambda f: f.p99_ms,
        absolute=lambda r: r.max_p99_ms,
        relative=lambda r, s: _times(r.p99_ratio_max, s),
    ),
    Metric(
        name="rejected_rate",
        unit="",
        read=lambda f: f.rejected_rate,
        absolute=lambda r: None,  # never the SLO: bad input is mostly the caller's
        relative=lambda r, s: _plus(r.error_rate_delta_max, s),
        samples=lambda f: f.asked,
        relative_floor=lambda r: r.error_rate_delta_max,
    ),
    Metric(
        name="ttft_p99_ms",
        unit="ms",
        read=lambda f: f.ttft.p99_ms,
        absolute=lambda r: None,  # the SLO bounds end-to-end latency
        relative=lambda r, s: _times(r.p99_ratio_max, s),
        samples=lambda f: f.ttft.count,
        applies=lambda canary, stable: canary.ttft.count > 0 and stable is not None and stable.ttft.count > 0,
    ),
)


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    outcome: Outcome
    value: float | None  # the canary's, over the window
    stable_value: float | None
    thresholds: dict[str, float] = field(default_factory=dict)  # "absolute"/"relative" -> limit checked
    samples: int = 0
    stable_samples: int = 0
    reason: str = ""

    def to_details(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome.value,
            "value": self.value,
            "stable_value": self.stable_value,
            "thresholds": dict(self.thresholds),
            "samples": self.samples,
            "stable_samples": self.stable_samples,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Analysis:
    outcome: Outcome
    metrics: tuple[MetricResult, ...]
    reason: str

    def to_details(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "metrics": [m.to_details() for m in self.metrics],
        }


def _fmt(value: float, unit: str) -> str:
    return f"{value:.1f} {unit}" if unit else f"{value:.2%}"


def judge(metric: Metric, canary: Figures, stable: Figures | None, rules: Rules) -> MetricResult:
    """One metric's outcome over the window, with the limits it checked and a one-line reason."""
    value = metric.read(canary)
    samples = metric.samples(canary)
    stable_samples = metric.samples(stable) if stable is not None else 0
    stable_ok = stable is not None and stable_samples >= rules.min_samples
    stable_value = metric.read(stable) if stable is not None and stable_ok else None

    def result(outcome: Outcome, reason: str, limits: dict[str, float]) -> MetricResult:
        return MetricResult(
            name=metric.name,
            outcome=outcome,
            value=value,
            stable_value=stable_value,
            thresholds=limits,
            samples=samples,
            stable_samples=stable_samples,
            reason=reason,
        )

    if samples < rules.min_samples or value is None:
        return result(
            Outcome.INCONCLUSIVE,
            f"{metric.name}: {samples} of {rules.min_samples} requests needed on the canary",
            {},
        )
    limits: dict[str, float] = {}
    absolute = metric.absolute(rules)
    if absolute is not None:
        limits["absolute"] = absolute
    if stable_value is not None and (relative := metric.relative(rules, stable_value)) is not None:
        limits["relative"] = relative
    elif (floor := metric.relative_floor(rules)) is not None and value <= floor:
        limits["relative"] = floor  # within stable's limit, whatever stable's value
    if not limits:
        why = "stable has too few requests" if not stable_ok else "no bound is set"
        return result(Outcome.INCONCLUSIVE, f"{metric.name}: nothing to judge it by ({why})", limits)
    breached = [(kind, limit) for kind, limit in limits.items() if value > limit]
    if breached:
        kind, limit = breached[0]
        versus = (
            f" (stable {_fmt(stable_value, metric.unit)})"
            if kind == "relative" and stable_value is not None
            else ""
        )
        return result(
            Outcome.FAILED,
            f"{metric.name} {_fmt(value, metric.unit)} is over its {kind} limit "
            f"{_fmt(limit, metric.unit)}{versus}",
            limits,
        )
    within = ", ".join(f"{kind} {_fmt(limit, metric.unit)}" for kind, limit in limits.items())
    return result(Outcome.SUCCESSFUL, f"{metric.name} {_fmt(value, metric.unit)} is within {within}", limits)


def analyse(
    canary: Figures, stable: Figures | None, rules: Rules, metrics: Sequence[Metric] = METRICS
) -> Analysis:
    """The step's verdict over the canary's window (and stable's over the same span)."""
    results = tuple(judge(m, canary, stable, rules) for m in metrics if m.applies(canary, stable))
    for outcome in (Outcome.FAILED, Outcome.INCONCLUSIVE):
        deciding = [r for r in results if r.outcome == outcome]
        if deciding:
            return Analysis(outcome=outcome, metrics=results, reason="; ".join(r.reason for r in deciding))
    return Analysis(outcome=Outcome.SUCCESSFUL, metrics=results, reason="; ".join(r.reason for r in results))
