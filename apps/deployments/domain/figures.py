"""A release's request figures: counts, errors and a latency histogram, and what follows from them
(error rate, rejected-input rate, p50, p99, requests per second). Pure Python:
apps.deployments.figures keeps them in Redis.

Latency is kept as counts in fixed buckets (upper bounds in ms, log-spaced about 10% apart), each
with the sum of its latencies, so figures from any number of web processes add up by plain sums,
and a window is the difference of two totals.

Resolution: a quantile is placed inside its bucket around the bucket's mean latency (see quantile),
so requests that all take about the same time read within 5% of it (their median at it), and
spread ones within their bucket's width, about 10% (at most 11%) of the value. A p99 ratio bound
under about 1.1 compares figures finer than that.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

# Each decade's bounds, about 10% apart (at most 11%); they include the 1-2-3-5-7.5 steps
# /metrics exports (PROMETHEUS_BOUNDS_MS), so its coarser histogram adds up exactly.
_MANTISSAS = (
    1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2, 2.2, 2.4, 2.6, 2.8, 3, 3.3, 3.6, 4, 4.4,
    4.7, 5, 5.5, 6, 6.5, 7, 7.5, 8.2, 9,
)  # fmt: skip
_LAST_MS = 60_000
# Upper bounds (ms) of the latency buckets, 1 ms to 60 s; a last, open bucket takes anything slower.
BOUNDS_MS: tuple[float, ...] = tuple(
    b for b in (round(m * 10**d, 3) for d in range(5) for m in _MANTISSAS) if b <= _LAST_MS
)
BUCKETS = len(BOUNDS_MS) + 1
# The subset of BOUNDS_MS a Prometheus histogram exports (a few dozen series per release, not 140).
PROMETHEUS_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 30_000, 60_000,
)  # fmt: skip
# Field names: "n" requests, "e" errors, "r" refused, "i" rejected (bad input), "h<k>" bucket k's
# count, "s<k>" its latency sum (ms). Figures written before the buckets were made finer used "b<k>"
# for counts.
_COUNT, _SUM, _OLD_COUNT = "h", "s", "b"


class Outcome(StrEnum):
    OK = "ok"  # answered
    ERROR = "error"  # the release failed it: the model erred, timed out, its placement's breaker is open
    REFUSED = "refused"  # not the release's doing (the deployment's bulkhead, this process's bound)
    # The model refused the caller's input (the worker's bad_input: too long, wrong fields) after
    # the API's own validation passed: the caller's doing unless stable accepts what it refuses.
    REJECTED = "rejected"


def bucket_of(latency_ms: float) -> int:
    """The index of the bucket a latency falls in."""
    return bisect.bisect_left(BOUNDS_MS, latency_ms)


def count_field(bucket: int) -> str:
    return f"{_COUNT}{bucket}"


def sum_field(bucket: int) -> str:
    return f"{_SUM}{bucket}"


@dataclass(frozen=True, slots=True)
class Figures:
    """Requests over some span of `seconds`: answered or failed (`requests`), of which `errors`;
    `refused` ones are counted apart and judge nothing; `rejected` ones (input the model refused)
    are counted apart too, judged only by their rate beside stable's. `buckets[i]` counts requests
    (answered or failed) whose latency fell in bucket i, and `sums_ms[i]` adds up their latencies
    (0 where it is unknown: figures made from counts alone)."""

    requests: int = 0
    errors: int = 0
    refused: int = 0
    rejected: int = 0
    buckets: tuple[int, ...] = field(default=(0,) * BUCKETS)
    seconds: float = 0.0
    sums_ms: tuple[float, ...] = field(default=(0.0,) * BUCKETS)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def asked(self) -> int:
        """Requests that reached the model: answered, failed, or their input rejected."""
        return self.requests + self.rejected

    @property
    def rejected_rate(self) -> float | None:
        return self.rejected / self.asked if self.asked else None

    @property
    def rps(self) -> float | None:
        return self.requests / self.seconds if self.seconds > 0 else None

    @property
    def p50_ms(self) -> float | None:
        return quantile(self.buckets, 0.50, self.sums_ms)

    @property
    def p99_ms(self) -> float | None:
        return quantile(self.buckets, 0.99, self.sums_ms)

    @property
    def latency_sum_ms(self) -> float:
        return sum(self.sums_ms)

    def minus(self, earlier: Figures, *, seconds: float) -> Figures:
        """The figures between an earlier total and this one, over `seconds`. A total that went
        backwards (its Redis lost the key) counts from zero instead of going negative."""
        if (
            self.requests < earlier.requests
            or self.rejected < earlier.rejected
            or any(a < b for a, b in zip(self.buckets, earlier.buckets, strict=True))
        ):
            earlier = Figures()
        return Figures(
            requests=self.requests - earlier.requests,
            errors=max(0, self.errors - earlier.errors),
            refused=max(0, self.refused - earlier.refused),
            rejected=self.rejected - earlier.rejected,
            buckets=tuple(a - b for a, b in zip(self.buckets, earlier.buckets, strict=True)),
            seconds=seconds,
            sums_ms=tuple(max(0.0, a - b) for a, b in zip(self.sums_ms, earlier.sums_ms, strict=True)),
        )

    def plus(self, other: Figures) -> Figures:
        return Figures(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            refused=self.refused + other.refused,
            rejected=self.rejected + other.rejected,
            buckets=tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
            seconds=max(self.seconds, other.seconds),
            sums_ms=tuple(a + b for a, b in zip(self.sums_ms, other.sums_ms, strict=True)),
        )

    def to_fields(self) -> dict[str, int | float]:
        """The counters as a flat dict (the Redis hash's fields; stored in a release's baseline)."""
        out: dict[str, int | float] = {
            "n": self.requests,
            "e": self.errors,
            "r": self.refused,
            "i": self.rejected,
        }
        for i, (count, total_ms) in enumerate(zip(self.buckets, self.sums_ms, strict=True)):
            if count:
                out[count_field(i)] = count
            if total_ms:
                out[sum_field(i)] = total_ms
        return out

    @classmethod
    def from_fields(
        cls, raw: Mapping[str | bytes, int | float | str | bytes], *, seconds: float = 0.0
    ) -> Figures:
        """Figures from to_fields' dict (or the Redis hash). Fields of the coarser layout used
        before ("b<i>", stored in older releases' baselines) read as nothing counted: a window
        measured from such a baseline counts from zero. Figures stored before rejected inputs were
        counted apart (no "i") read as none rejected."""
        values = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        if any(k.startswith(_OLD_COUNT) for k in values):
            return cls(seconds=seconds)
        return cls(
            requests=int(values.get("n", 0)),
            errors=int(values.get("e", 0)),
            refused=int(values.get("r", 0)),
            rejected=int(values.get("i", 0)),
            buckets=tuple(int(values.get(count_field(i), 0)) for i in range(BUCKETS)),
            seconds=seconds,
            sums_ms=tuple(float(values.get(sum_field(i), 0)) for i in range(BUCKETS)),
        )


def summed(parts: Iterable[Figures], *, seconds: float) -> Figures:
    """`parts` added up, over `seconds` (the span they cover together)."""
    out = Figures()
    for part in parts:
        out = out.plus(part)
    return replace(out, seconds=seconds)


def quantile(buckets: tuple[int, ...], q: float, sums_ms: tuple[float, ...] | None = None) -> float | None:
    """The q-quantile of the latencies counted in `buckets` (ms); None when nothing was counted.

    Within its bucket the quantile is interpolated linearly over the narrowest range centred on
    the bucket's mean latency (`sums_ms`) that the bucket's bounds allow: latencies all alike read
    as that latency, latencies spread evenly over the bucket as plain linear interpolation across
    it. Without a sum, across the whole bucket. The open last bucket answers its mean, else its
    lower bound."""
    count_all = sum(buckets)
    if count_all == 0:
        return None
    rank = q * count_all
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = BOUNDS_MS[i - 1] if i > 0 else 0.0
            mean = sums_ms[i] / count if sums_ms and sums_ms[i] > 0 else None
            if i >= len(BOUNDS_MS):
                return float(low if mean is None else max(low, mean))
            high = BOUNDS_MS[i]
            if mean is not None and low <= mean <= high:
                half = min(mean - low, high - mean)
                low, high = mean - half, mean + half
            return low + (high - low) * max(0.0, rank - seen) / count
        seen += count
    return float(BOUNDS_MS[-1])
