"""The performance check's rule: a release's probe latencies against the stable release's, and their
tail against the deployment's p99 objective (pure Python).

Like with like. Stable's latency, when it has placements loaded, is measured by the same probe
sent from the same process, alternately with the release's (release, stable, release, …), after
both were warmed up: the two see the same load and the same moments of CPU contention. Their
*medians* are compared (release ≤ stable × the deployment's p99_ratio_max): the median of 20
probes is steady, where their p99 is their maximum, decided by one cold inference or one stalled
moment. Only when stable has nothing loaded to probe (a recreate unloaded it) is the release's
median held to stable's live p50, from the figures its real traffic left; both are estimated from
the same latency buckets (apps.deployments.domain.figures), so a handful of probes and many live
requests read alike. Both sides' p99s are reported, not judged against each other.

The tail is judged against the absolute objective (slo_p99_ms) only, and by the p90 of at least
SAMPLES probes, not their p99: with 20 probes the p99 is the slowest one, so one outlier would
decide; the p90 is the 18th of 20, so it takes three slow probes in twenty to fail, while a release
whose latency is over the objective most of the time still fails. A p90 over the objective means
the p99 is over it too, so this fails only a release that certainly misses its p99 objective.

The version's benchmark baseline (a benchmark job's figures on the version, `benchmark_expected`)
is a third comparison: what the probe's request should take by the benchmark. The benchmark times
the deployments' own probe in the runtime, which is used when present; an older baseline gives an
estimate instead, its first token then one per-token latency for each further token at batch 1. The
benchmark timed the runtime in the worker's own process, where a probe also crosses the data plane
(bulkhead, breaker, placement lookup, the hand-off to the device worker): a fixed allowance for that
path (MOC_PERF_PATH_ALLOWANCE_MS) is added before the ratio, so a fast model is not failed for the
overhead alone. The baseline may be weeks old or from another device: so a median over
(benchmark + allowance) × p99_ratio_max only warns, and fails when it is over BENCHMARK_FAIL_FACTOR
times that bound, a slowdown no overhead explains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.deployments.domain.figures import BUCKETS, Figures, bucket_of, quantile

# The fewest probes a side the rule judges; the check takes this many.
SAMPLES = 20
# The quantile of the probes held to the p99 objective (see the module's docstring).
TAIL_Q = 0.90
# A median over the benchmark's bound warns; over this many times the bound it fails.
BENCHMARK_FAIL_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # pass | warn | fail
    reason: str


@dataclass(frozen=True, slots=True)
class Latencies:
    """A side's probe latencies as the rule reads them (ms), each estimated like live figures."""

    count: int
    median_ms: float
    tail_ms: float  # the TAIL_Q quantile
    p99_ms: float
    max_ms: float

    def to_evidence(self) -> dict[str, float | int]:
        return {
            "probes": self.count,
            "p50_ms": round(self.median_ms, 2),
            "p90_ms": round(self.tail_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
        }


@dataclass(frozen=True, slots=True)
class Baseline:
    """Stable's latency the release's median is held to, and what it is (for the reason)."""

    median_ms: float
    p99_ms: float | None
    what: str  # "stable's median of 20 alternated probes", "stable's live p50 over 812 requests"


def quantile_of(latencies_ms: Sequence[float], q: float) -> float | None:
    """The q-quantile of `latencies_ms` as the figures estimate it (bucketed, with each bucket's
    latency sum, as recorded figures keep it), None for none."""
    counts = [0] * BUCKETS
    sums_ms = [0.0] * BUCKETS
    for latency in latencies_ms:
        bucket = bucket_of(latency)
        counts[bucket] += 1
        sums_ms[bucket] += latency
    return quantile(tuple(counts), q, tuple(sums_ms))


def latencies(latencies_ms: Sequence[float]) -> Latencies:
    """The summary of at least SAMPLES probe latencies; ValueError for fewer (too few to judge)."""
    if len(latencies_ms) < SAMPLES:
        raise ValueError(f"{len(latencies_ms)} probe latencies: the rule needs at least {SAMPLES}")
    low, high = min(latencies_ms), max(latencies_ms)
    # Within its bucket a quantile is interpolated about the bucket's mean, which can pass the
    # slowest probe when one lies alone in the top bucket: no quantile reads past the samples.
    median, tail, p99 = (
        min(high, max(low, quantile_of(latencies_ms, q) or low)) for q in (0.5, TAIL_Q, 0.99)
    )
    return Latencies(len(latencies_ms), median, tail, p99, high)


def paired(stable_ms: Sequence[float]) -> Baseline:
    """Stable's probes, alternated with the release's: the baseline to prefer."""
    stable = latencies(stable_ms)
    return Baseline(stable.median_ms, stable.p99_ms, f"stable's median of {stable.count} alternated probes")


def live(stable: Figures, *, min_requests: int) -> Baseline | None:
    """Stable's recent live figures, or None when they are fewer than `min_requests` (too few to
    say anything of its latency)."""
    median = stable.p50_ms
    if stable.requests < min_requests or median is None:
        return None
    return Baseline(median, stable.p99_ms, f"stable's live p50 over {stable.requests} requests")


@dataclass(frozen=True, slots=True)
class Expected:
    """What a probe should take by the version's benchmark baseline: `measured_ms` as the benchmark
    timed or estimated it in the runtime, plus `allowance_ms` for the serving path it did not take."""

    measured_ms: float
    allowance_ms: float
    basis: str  # "probe" (the probe itself, timed) | "estimate" (first token + per-token latencies)
    how: str  # the figures it came from, in words
    note: str  # what stood in for a missing figure, "" when nothing did
    where: str  # " on <device> of <date>", or ""

    @property
    def ms(self) -> float:
        return self.measured_ms + self.allowance_ms

    def baseline(self) -> Baseline:
        """The expectation as the figure `judge` holds a release's median to."""
        allowance = f" + {self.allowance_ms:g} ms for the serving path" if self.allowance_ms else ""
        note = f"; {self.note}" if self.note else ""
        return Baseline(
            self.ms, None, f"the version's benchmark baseline{self.where} ({self.how}{allowance}{note})"
        )


def benchmark_expected(
    benchmark: Mapping[str, Any], *, prompt: str | None, new_tokens: int | None, allowance_ms: float
) -> Expected | None:
    """What a probe of `prompt` generating `new_tokens` (None: one that generates nothing, an
    embedding) should take by the version's benchmark baseline, or None when it holds no figure
    comparable with that probe.

    Best is the benchmark's own timing of the deployments' probe in the runtime (its "probe", when
    it asked for the same prompt and tokens). Else an estimate: the first-token p50 plus a per-token
    p50 for each further token, from the run at batch 1 with the shortest prompt (a probe is one
    short request); without a batch-1 run, the smallest batch's, which the note says; a baseline
    without runs is read by its top-level figures. A whole request's latency is never used: it
    generated another number of tokens. `allowance_ms` is added for the serving path a probe takes
    and the benchmark does not (inference.infer's bulkhead, breaker, placement lookup and hand-off)."""
    if new_tokens is None:
        return None  # a benchmark times generation only
    where = _where(benchmark)
    probe = benchmark.get("probe")
    if (
        isinstance(probe, Mapping)
        and probe.get("max_new_tokens") == new_tokens
        and probe.get("prompt") == prompt
    ):
        timed = _positive(probe.get("ms_p50"))
        if timed is not None:
            how = f"its probe timed in the runtime, p50 {timed:.1f} ms"
            return Expected(timed, allowance_ms, "probe", how, "", where)
    ttft, token, note = _per_token(benchmark)
    if ttft is None or token is None:
        return None
    further = max(new_tokens - 1, 0)
    how = f"first token {ttft:.1f} ms + {further} × {token:.1f} ms a token"
    return Expected(ttft + token * further, allowance_ms, "estimate", how, note, where)


def _per_token(benchmark: Mapping[str, Any]) -> tuple[float | None, float | None, str]:
    """The first-token and per-token p50 of the run nearest a probe (batch 1, shortest prompt),
    and a note when the smallest batch stands in for batch 1."""
    runs = [
        run
        for run in benchmark.get("runs") or ()
        if isinstance(run, Mapping) and _positive(run.get("batch")) is not None
    ]
    if not runs:
        return _positive(benchmark.get("ttft_ms_p50")), _positive(benchmark.get("token_ms_p50")), ""
    nearest = min(runs, key=lambda run: (run["batch"], _positive(run.get("prompt_tokens")) or 0.0))
    batch = nearest["batch"]
    note = "" if batch == 1 else f"no run at batch 1: batch {batch:g}'s figures stand in, a looser bound"
    return _positive(nearest.get("ttft_ms_p50")), _positive(nearest.get("token_ms_p50")), note


def _where(benchmark: Mapping[str, Any]) -> str:
    device = benchmark.get("device")
    label = device.get("label") if isinstance(device, Mapping) else device
    where = f" on {label}" if isinstance(label, str) and label else ""
    at = benchmark.get("at")
    return where + (f" of {at[:10]}" if isinstance(at, str) and at else "")


def _positive(value: Any) -> float | None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        return None
    return float(value)


def too_slow(*, timed: int, probes: int, probe_ms: float, seconds: float) -> Verdict:
    """A warning, neither pass nor fail: only `timed` probes a side (fewer than SAMPLES, too few to
    judge) fit in the `seconds` the check had to probe, the latest taking `probe_ms`, of the
    `probes` (warm-ups included) a judgement takes."""
    return Verdict(
        "warn",
        f"too slow to judge: {timed} of {SAMPLES} probes a side timed in the {seconds:g} s the check "
        f"has, about {probe_ms:.0f} ms a probe; the {probes} probes it takes, warm-ups of each replica "
        f"included, would need about {probes * probe_ms / 1000:.0f} s: a longer timeout for the "
        "check or fewer replicas would let it judge",
    )


def judge(
    *,
    release_ms: Sequence[float],
    baseline: Baseline | None,
    ratio_max: float,
    slo_p99_ms: float | None,
    benchmark: Baseline | None = None,
) -> Verdict:
    """Fail when the release's median exceeds the baseline's × `ratio_max`, or its tail (TAIL_Q)
    the objective; against the version's `benchmark`, warn over its bound and fail over
    BENCHMARK_FAIL_FACTOR times it (see the module's docstring); warn when there is nothing to
    compare with: nothing judged is never a pass."""
    release = latencies(release_ms)
    problems: list[str] = []
    warnings: list[str] = []
    judged: list[str] = []
    if baseline is not None:
        bound = baseline.median_ms * ratio_max
        stable_p99 = "?" if baseline.p99_ms is None else f"{baseline.p99_ms:.1f}"
        line = (
            f"median {release.median_ms:.1f} ms against {baseline.what}, {baseline.median_ms:.1f} ms × "
            f"{ratio_max:g} = {bound:.1f} ms (p99 {release.p99_ms:.1f} ms, stable's {stable_p99} ms)"
        )
        (problems if release.median_ms > bound else judged).append(line)
    if slo_p99_ms is not None:
        line = (
            f"p{TAIL_Q * 100:g} of {release.count} probes {release.tail_ms:.1f} ms against the objective "
            f"{slo_p99_ms:g} ms"
        )
        (problems if release.tail_ms > slo_p99_ms else judged).append(line)
    if benchmark is not None:
        bound = benchmark.median_ms * ratio_max
        line = (
            f"median {release.median_ms:.1f} ms against {benchmark.what}, {benchmark.median_ms:.1f} ms × "
            f"{ratio_max:g} = {bound:.1f} ms"
        )
        if release.median_ms > bound * BENCHMARK_FAIL_FACTOR:
            problems.append(f"{line}: over {BENCHMARK_FAIL_FACTOR:g} times that")
        elif release.median_ms > bound:
            warnings.append(f"{line}: slower, within {BENCHMARK_FAIL_FACTOR:g} times it")
        else:
            judged.append(line)
    if problems:
        return Verdict("fail", "; ".join(problems))
    if warnings:
        return Verdict("warn", "; ".join([*warnings, *judged]))
    if not judged:
        nothing = "no stable latencies, no p99 objective"
        return Verdict(
            "warn", f"median {release.median_ms:.1f} ms, with nothing to compare it with: {nothing}"
        )
    return Verdict("pass", "; ".join(judged))
