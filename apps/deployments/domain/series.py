"""A deployment's serving figures as points on a chart: one release's (or several releases')
figures over one span (a 5-second bucket, a minute, or a coarser step of history), reduced to
counts and quantiles. Pure Python: live points come from Redis's buckets (point_of), history from
the per-minute rollup (apps.deployments.rollup), and coarser steps from minutes (coarsen).

Goodput is the answered requests within the deployment's latency SLO (all answered ones when it
sets none), estimated from the latency buckets: errors are taken to be spread over them as the
answered requests are.

Quantiles of several points together (coarsen, merged) are estimates, as only each point's own
quantiles are kept: p50 is the request-weighted mean of the points' medians, p99 the largest of
their p99s (an upper bound: a bad minute's tail is never averaged away).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.deployments.domain.figures import Figures

# The timings each point holds a p50 and a p99 of: "" is the end-to-end latency.
TIMINGS = ("", "ttft_", "itl_", "queue_")


@dataclass(frozen=True, slots=True)
class Point:
    """Serving figures over `seconds` from `t` (Unix seconds). `requests`: answered or failed, of
    which `errors`; `rejected` (input the model refused) and `refused` (before the model; by reason
    in `refusals` where given) apart. Timings in ms, None where nothing measured them."""

    t: int
    seconds: float
    requests: int = 0
    errors: int = 0
    rejected: int = 0
    refused: int = 0
    refusals: Mapping[str, int] = field(default_factory=dict)
    good: int = 0
    tokens_out: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    itl_p50_ms: float | None = None
    itl_p99_ms: float | None = None
    queue_p50_ms: float | None = None
    queue_p99_ms: float | None = None

    @property
    def ok(self) -> int:
        return self.requests - self.errors

    def _per_s(self, count: int) -> float | None:
        return count / self.seconds if self.seconds > 0 else None

    @property
    def rps(self) -> float | None:
        return self._per_s(self.requests)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def tokens_per_s(self) -> float | None:
        return self._per_s(self.tokens_out)

    @property
    def goodput(self) -> float | None:
        """Good requests per second."""
        return self._per_s(self.good)

    @property
    def refused_per_s(self) -> float | None:
        return self._per_s(self.refused)

    def to_dict(self) -> dict[str, Any]:
        """The point as the API and the deployment page's charts take it."""
        out: dict[str, Any] = {
            "t": self.t,
            "requests": self.requests,
            "errors": self.errors,
            "refused": self.refused,
            "rejected": self.rejected,
            "refusals": dict(self.refusals),
            "good": self.good,
            "tokens_out": self.tokens_out,
            "rps": self.rps,
            "error_rate": self.error_rate,
            "tokens_per_s": self.tokens_per_s,
            "goodput": self.goodput,
        }
        for timing in TIMINGS:
            for q in ("p50", "p99"):
                name = f"{timing}{q}_ms"
                out[name] = getattr(self, name)
        return out


def good_of(figures: Figures, slo_p99_ms: float | None) -> int:
    """The answered requests within `slo_p99_ms` (all answered ones without an SLO), estimated
    from the latency buckets."""
    ok = figures.requests - figures.errors
    if slo_p99_ms is None or ok <= 0:
        return max(0, ok)
    within = figures.latency.within(slo_p99_ms)
    return min(ok, round(within * ok / figures.requests))


def point_of(figures: Figures, *, t: int, slo_p99_ms: float | None) -> Point:
    """The point of a span's figures (their `seconds`), starting at `t`."""
    return Point(
        t=t,
        seconds=figures.seconds,
        requests=figures.requests,
        errors=figures.errors,
        rejected=figures.rejected,
        refused=figures.refused,
        refusals=dict(figures.refusals),
        good=good_of(figures, slo_p99_ms),
        tokens_out=figures.tokens_out,
        p50_ms=figures.p50_ms,
        p99_ms=figures.p99_ms,
        ttft_p50_ms=figures.ttft.p50_ms,
        ttft_p99_ms=figures.ttft.p99_ms,
        itl_p50_ms=figures.itl.p50_ms,
        itl_p99_ms=figures.itl.p99_ms,
        queue_p50_ms=figures.queue.p50_ms,
        queue_p99_ms=figures.queue.p99_ms,
    )


def _weighted(pairs: Iterable[tuple[float | None, int]]) -> float | None:
    known = [(v, max(1, n)) for v, n in pairs if v is not None]
    if not known:
        return None
    return sum(v * n for v, n in known) / sum(n for _, n in known)


def merged(points: Sequence[Point], *, t: int, seconds: float) -> Point:
    """Points added up into one over `seconds` from `t` (counts summed, quantiles estimated)."""
    refusals: dict[str, int] = {}
    for p in points:
        for reason, n in p.refusals.items():
            refusals[reason] = refusals.get(reason, 0) + n
    timings: dict[str, float | None] = {}
    for timing in TIMINGS:
        timings[f"{timing}p50_ms"] = _weighted((getattr(p, f"{timing}p50_ms"), p.requests) for p in points)
        p99s = [v for p in points if (v := getattr(p, f"{timing}p99_ms")) is not None]
        timings[f"{timing}p99_ms"] = max(p99s) if p99s else None
    return Point(
        t=t,
        seconds=seconds,
        requests=sum(p.requests for p in points),
        errors=sum(p.errors for p in points),
        rejected=sum(p.rejected for p in points),
        refused=sum(p.refused for p in points),
        refusals=refusals,
        good=sum(p.good for p in points),
        tokens_out=sum(p.tokens_out for p in points),
        **timings,
    )


def coarsen(points: Iterable[Point], step_s: int) -> list[Point]:
    """Points merged into steps of `step_s` seconds (aligned on multiples of it), oldest first;
    steps with no point are left out."""
    steps: dict[int, list[Point]] = {}
    for p in points:
        steps.setdefault(p.t // step_s * step_s, []).append(p)
    return [merged(parts, t=t, seconds=step_s) for t, parts in sorted(steps.items())]
