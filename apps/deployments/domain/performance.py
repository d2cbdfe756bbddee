"""The performance check's rule: a release's probe latencies against the stable release's recent
p99 and the deployment's p99 objective (pure Python).

Both p99s come from the same latency buckets and per-bucket latency sums
(apps.deployments.domain.figures), so the release's probes and stable's live figures are estimated
alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from apps.deployments.domain.figures import BUCKETS, bucket_of, quantile


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # pass | warn | fail
    reason: str


def p99_of(latencies_ms: Sequence[float]) -> float | None:
    """The p99 of `latencies_ms` as the figures estimate it (bucketed, with each bucket's latency
    sum, as recorded figures keep it), None for none."""
    counts = [0] * BUCKETS
    sums_ms = [0.0] * BUCKETS
    for latency in latencies_ms:
        bucket = bucket_of(latency)
        counts[bucket] += 1
        sums_ms[bucket] += latency
    return quantile(tuple(counts), 0.99, tuple(sums_ms))


def judge(
    *,
    p99_ms: float,
    stable_p99_ms: float | None,
    ratio_max: float,
    slo_p99_ms: float | None,
) -> Verdict:
    """Fail when the release's p99 exceeds stable's × `ratio_max` or the objective; warn when there is
    neither to compare with (no stable figures, no objective): nothing judged is never a pass."""
    problems: list[str] = []
    judged: list[str] = []
    if stable_p99_ms is not None:
        bound = stable_p99_ms * ratio_max
        line = f"p99 {p99_ms:.1f} ms against stable's {stable_p99_ms:.1f} ms × {ratio_max:g} = {bound:.1f} ms"
        (problems if p99_ms > bound else judged).append(line)
    if slo_p99_ms is not None:
        line = f"p99 {p99_ms:.1f} ms against the objective {slo_p99_ms:g} ms"
        (problems if p99_ms > slo_p99_ms else judged).append(line)
    if problems:
        return Verdict("fail", "; ".join(problems))
    if not judged:
        nothing = "no stable figures, no p99 objective"
        return Verdict("warn", f"p99 {p99_ms:.1f} ms, with nothing to compare it with: {nothing}")
    return Verdict("pass", "; ".join(judged))
