"""A release's request figures: counts, errors and a latency histogram, and what follows from them
(error rate, p50, p99, requests per second). Pure Python: apps.deployments.figures keeps them in Redis.

Latency is kept as counts in fixed buckets (upper bounds in ms, log-spaced), so figures from any
number of web processes add up by plain sums, and a window is the difference of two totals.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum

# Upper bounds (ms) of the latency buckets; a last, open bucket takes anything slower.
BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 30_000, 60_000,
)  # fmt: skip
BUCKETS = len(BOUNDS_MS) + 1


class Outcome(StrEnum):
    OK = "ok"  # answered
    ERROR = "error"  # the release failed it: the model erred, timed out, its placement's breaker is open
    REFUSED = "refused"  # not the release's doing (the caller's bad input, the deployment's bulkhead)


def bucket_of(latency_ms: float) -> int:
    """The index of the bucket a latency falls in."""
    return bisect.bisect_left(BOUNDS_MS, latency_ms)


@dataclass(frozen=True, slots=True)
class Figures:
    """Requests over some span of `seconds`: answered or failed (`requests`), of which `errors`;
    `refused` ones are counted apart and judge nothing. `buckets[i]` counts requests (answered or
    failed) whose latency fell in bucket i."""

    requests: int = 0
    errors: int = 0
    refused: int = 0
    buckets: tuple[int, ...] = field(default=(0,) * BUCKETS)
    seconds: float = 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def rps(self) -> float | None:
        return self.requests / self.seconds if self.seconds > 0 else None

    @property
    def p50_ms(self) -> float | None:
        return quantile(self.buckets, 0.50)

    @property
    def p99_ms(self) -> float | None:
        return quantile(self.buckets, 0.99)

    def minus(self, earlier: Figures, *, seconds: float) -> Figures:
        """The figures between an earlier total and this one, over `seconds`. A total that went
        backwards (its Redis lost the key) counts from zero instead of going negative."""
        if self.requests < earlier.requests or any(
            a < b for a, b in zip(self.buckets, earlier.buckets, strict=True)
        ):
            earlier = Figures()
        return Figures(
            requests=self.requests - earlier.requests,
            errors=max(0, self.errors - earlier.errors),
            refused=max(0, self.refused - earlier.refused),
            buckets=tuple(a - b for a, b in zip(self.buckets, earlier.buckets, strict=True)),
            seconds=seconds,
        )

    def plus(self, other: Figures) -> Figures:
        return Figures(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            refused=self.refused + other.refused,
            buckets=tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
            seconds=max(self.seconds, other.seconds),
        )

    def to_fields(self) -> dict[str, int]:
        """The counters as a flat dict (the Redis hash's fields; stored in a release's baseline)."""
        out = {"n": self.requests, "e": self.errors, "r": self.refused}
        out.update({f"b{i}": c for i, c in enumerate(self.buckets) if c})
        return out

    @classmethod
    def from_fields(cls, raw: dict[str, int | str | bytes], *, seconds: float = 0.0) -> Figures:
        values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        buckets = tuple(values.get(f"b{i}", 0) for i in range(BUCKETS))
        return cls(
            requests=values.get("n", 0),
            errors=values.get("e", 0),
            refused=values.get("r", 0),
            buckets=buckets,
            seconds=seconds,
        )


def quantile(buckets: tuple[int, ...], q: float) -> float | None:
    """The q-quantile of the latencies counted in `buckets` (ms), interpolated linearly within its
    bucket; None when nothing was counted. The open last bucket answers its lower bound."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = BOUNDS_MS[i - 1] if i > 0 else 0.0
            if i >= len(BOUNDS_MS):
                return float(low)
            high = BOUNDS_MS[i]
            return low + (high - low) * max(0.0, rank - seen) / count
        seen += count
    return float(BOUNDS_MS[-1])
