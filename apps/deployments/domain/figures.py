"""A release's request figures: counts, errors and a latency histogram, and what follows from them
(error rate, rejected-input rate, p50, p99, requests per second); and for generated text the time
to first token (TTFT), the inter-token latency (ITL: each request's mean gap between tokens),
the wait in the device's queue, the output tokens, and refusals by reason. Pure Python:
apps.deployments.figures keeps them in Redis.

Latency (and TTFT, ITL, queue wait alike) is kept as counts in fixed buckets (upper bounds in ms,
log-spaced about 10% apart), each with the sum of its latencies, so figures from any number of web
processes add up by plain sums, and a window is the difference of two totals.

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
# count, "s<k>" its latency sum (ms); "o" output tokens, "x:<reason>" refusals by reason; the other
# histograms' buckets with their prefix (HISTOGRAMS) before "h"/"s". Figures written before the
# buckets were made finer used "b<k>" for counts.
_COUNT, _SUM, _OLD_COUNT = "h", "s", "b"
_TOKENS_OUT, _REFUSAL = "o", "x:"
# The histograms beside latency, by name, and their fields' prefix.
HISTOGRAMS = {"ttft": "f", "itl": "g", "queue": "q"}


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


def count_field(bucket: int, prefix: str = "") -> str:
    return f"{prefix}{_COUNT}{bucket}"


def sum_field(bucket: int, prefix: str = "") -> str:
    return f"{prefix}{_SUM}{bucket}"


def _zeros() -> tuple[int, ...]:
    return (0,) * BUCKETS


def _zero_sums() -> tuple[float, ...]:
    return (0.0,) * BUCKETS


@dataclass(frozen=True, slots=True)
class Histogram:
    """Samples of one duration (ms) counted in BOUNDS_MS's buckets, each with its samples' sum."""

    counts: tuple[int, ...] = field(default_factory=_zeros)
    sums_ms: tuple[float, ...] = field(default_factory=_zero_sums)

    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def sum_ms(self) -> float:
        return sum(self.sums_ms)

    @property
    def p50_ms(self) -> float | None:
        return quantile(self.counts, 0.50, self.sums_ms)

    @property
    def p99_ms(self) -> float | None:
        return quantile(self.counts, 0.99, self.sums_ms)

    def plus(self, other: Histogram) -> Histogram:
        return Histogram(
            counts=tuple(a + b for a, b in zip(self.counts, other.counts, strict=True)),
            sums_ms=tuple(a + b for a, b in zip(self.sums_ms, other.sums_ms, strict=True)),
        )

    def minus(self, earlier: Histogram) -> Histogram:
        return Histogram(
            counts=tuple(max(0, a - b) for a, b in zip(self.counts, earlier.counts, strict=True)),
            sums_ms=tuple(max(0.0, a - b) for a, b in zip(self.sums_ms, earlier.sums_ms, strict=True)),
        )

    def went_back(self, earlier: Histogram) -> bool:
        return any(a < b for a, b in zip(self.counts, earlier.counts, strict=True))

    def within(self, limit_ms: float) -> float:
        """About how many samples took at most `limit_ms`: whole buckets below it, and the share
        of the bucket it falls in below it, interpolated across that bucket as quantile does."""
        index = bucket_of(limit_ms)
        below = float(sum(self.counts[:index]))
        count = self.counts[index] if index < BUCKETS else 0
        if not count or index >= len(BOUNDS_MS):
            return below
        low, high = (BOUNDS_MS[index - 1] if index > 0 else 0.0), BOUNDS_MS[index]
        mean = self.sums_ms[index] / count if self.sums_ms[index] > 0 else None
        if mean is not None and low <= mean <= high:
            half = min(mean - low, high - mean)
            low, high = mean - half, mean + half
        if high <= low:
            return below + (count if limit_ms >= high else 0)
        return below + count * min(1.0, max(0.0, (limit_ms - low) / (high - low)))

    def fields(self, prefix: str) -> dict[str, int | float]:
        out: dict[str, int | float] = {}
        for i, (count, total_ms) in enumerate(zip(self.counts, self.sums_ms, strict=True)):
            if count:
                out[count_field(i, prefix)] = count
            if total_ms:
                out[sum_field(i, prefix)] = total_ms
        return out

    @classmethod
    def from_values(cls, values: Mapping[str, int | float | str | bytes], prefix: str) -> Histogram:
        return cls(
            counts=tuple(int(values.get(count_field(i, prefix), 0)) for i in range(BUCKETS)),
            sums_ms=tuple(float(values.get(sum_field(i, prefix), 0)) for i in range(BUCKETS)),
        )


def increments(
    *,
    outcome: Outcome,
    latency_ms: float,
    ttft_ms: float | None = None,
    itl_ms: float | None = None,
    tokens_out: int = 0,
    queue_ms: float | None = None,
    refusal: str = "",
) -> tuple[dict[str, int], dict[str, float]]:
    """What one request adds to a release's fields: (integer fields, float fields). Refused and
    rejected requests are counted apart, their timings nowhere: what the release took to answer or
    fail is what its figures judge; a refusal's reason is counted when given. Tokens made are
    counted whatever the outcome."""
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    if outcome == Outcome.REFUSED:
        counts["r"] = 1
        if refusal:
            counts[f"{_REFUSAL}{refusal}"] = 1
    elif outcome == Outcome.REJECTED:
        counts["i"] = 1
    else:
        counts["n"] = 1
        if outcome == Outcome.ERROR:
            counts["e"] = 1
        timings = {"": latency_ms, HISTOGRAMS["ttft"]: ttft_ms, HISTOGRAMS["itl"]: itl_ms}
        timings[HISTOGRAMS["queue"]] = queue_ms
        for prefix, ms in timings.items():
            if ms is not None:
                index = bucket_of(ms)
                counts[count_field(index, prefix)] = 1
                sums[sum_field(index, prefix)] = round(max(0.0, ms), 3)
    if tokens_out > 0:
        counts[_TOKENS_OUT] = tokens_out
    return counts, sums


@dataclass(frozen=True, slots=True)
class Figures:
    """Requests over some span of `seconds`: answered or failed (`requests`), of which `errors`;
    `refused` ones are counted apart and judge nothing (`refusals`: those whose reason was given,
    by reason); `rejected` ones (input the model refused) are counted apart too, judged only by
    their rate beside stable's. `buckets[i]` counts requests (answered or failed) whose latency
    fell in bucket i, and `sums_ms[i]` adds up their latencies (0 where it is unknown: figures made
    from counts alone). `ttft`, `itl` and `queue` hold the requests that measured them;
    `tokens_out` the tokens generated."""

    requests: int = 0
    errors: int = 0
    refused: int = 0
    rejected: int = 0
    buckets: tuple[int, ...] = field(default=(0,) * BUCKETS)
    seconds: float = 0.0
    sums_ms: tuple[float, ...] = field(default=(0.0,) * BUCKETS)
    ttft: Histogram = field(default_factory=Histogram)
    itl: Histogram = field(default_factory=Histogram)
    queue: Histogram = field(default_factory=Histogram)
    tokens_out: int = 0
    refusals: Mapping[str, int] = field(default_factory=dict)

    @property
    def latency(self) -> Histogram:
        return Histogram(counts=self.buckets, sums_ms=self.sums_ms)

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

    def _timings(self) -> tuple[Histogram, Histogram, Histogram]:
        return self.ttft, self.itl, self.queue

    def minus(self, earlier: Figures, *, seconds: float) -> Figures:
        """The figures between an earlier total and this one, over `seconds`. A total that went
        backwards (its Redis lost the key) counts from zero instead of going negative."""
        if (
            self.requests < earlier.requests
            or self.rejected < earlier.rejected
            or self.tokens_out < earlier.tokens_out
            or any(a < b for a, b in zip(self.buckets, earlier.buckets, strict=True))
            or any(a.went_back(b) for a, b in zip(self._timings(), earlier._timings(), strict=True))
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
            ttft=self.ttft.minus(earlier.ttft),
            itl=self.itl.minus(earlier.itl),
            queue=self.queue.minus(earlier.queue),
            tokens_out=self.tokens_out - earlier.tokens_out,
            refusals=_positive({k: n - earlier.refusals.get(k, 0) for k, n in self.refusals.items()}),
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
            ttft=self.ttft.plus(other.ttft),
            itl=self.itl.plus(other.itl),
            queue=self.queue.plus(other.queue),
            tokens_out=self.tokens_out + other.tokens_out,
            refusals={
                k: self.refusals.get(k, 0) + other.refusals.get(k, 0)
                for k in {*self.refusals, *other.refusals}
            },
        )

    def to_fields(self) -> dict[str, int | float]:
        """The counters as a flat dict (the Redis hash's fields; stored in a release's baseline)."""
        out: dict[str, int | float] = {
            "n": self.requests,
            "e": self.errors,
            "r": self.refused,
            "i": self.rejected,
        }
        out.update(self.latency.fields(""))
        for name, prefix in HISTOGRAMS.items():
            out.update(getattr(self, name).fields(prefix))
        if self.tokens_out:
            out[_TOKENS_OUT] = self.tokens_out
        out.update({f"{_REFUSAL}{reason}": n for reason, n in self.refusals.items()})
        return out

    @classmethod
    def from_fields(
        cls, raw: Mapping[str | bytes, int | float | str | bytes], *, seconds: float = 0.0
    ) -> Figures:
        """Figures from to_fields' dict (or the Redis hash). Fields of the coarser layout used
        before ("b<i>", stored in older releases' baselines) read as nothing counted: a window
        measured from such a baseline counts from zero. Figures stored before rejected inputs were
        counted apart (no "i") read as none rejected, and before TTFT, ITL, queue wait, tokens and
        refusals' reasons were counted, as none of those."""
        values = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
        if any(k.startswith(_OLD_COUNT) for k in values):
            return cls(seconds=seconds)
        latency = Histogram.from_values(values, "")
        return cls(
            requests=int(values.get("n", 0)),
            errors=int(values.get("e", 0)),
            refused=int(values.get("r", 0)),
            rejected=int(values.get("i", 0)),
            buckets=latency.counts,
            seconds=seconds,
            sums_ms=latency.sums_ms,
            ttft=Histogram.from_values(values, HISTOGRAMS["ttft"]),
            itl=Histogram.from_values(values, HISTOGRAMS["itl"]),
            queue=Histogram.from_values(values, HISTOGRAMS["queue"]),
            tokens_out=int(values.get(_TOKENS_OUT, 0)),
            refusals={
                k[len(_REFUSAL) :]: int(v) for k, v in values.items() if k.startswith(_REFUSAL) and int(v)
            },
        )


def _positive(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: n for k, n in counts.items() if n > 0}


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
