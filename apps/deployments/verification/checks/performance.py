"""performance: the release's probe latencies against the version's benchmark (skipped until
benchmark jobs exist) and against the stable release's recent live p99 and the p99 objective."""

from __future__ import annotations

import time
from typing import Any

from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain import performance
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.domain.figures import Figures
from apps.deployments.verification import probes
from apps.deployments.verification.base import Context, Outcome
from apps.serving.inference import Refused

NAME = CheckName.PERFORMANCE
DESCRIPTION = "Probe latency against the version's benchmark and the stable release's live p99"
TIMEOUT_S = 90.0
PROBES = 20
# Stable's figures over this many seconds before the run are its recent p99.
STABLE_WINDOW_S = 300
BENCHMARK_SKIPPED = "no benchmark baseline: benchmark jobs do not exist yet"


def run(ctx: Context) -> Outcome:
    probe = probes.probe_for(ctx.version)
    if isinstance(probe, str):
        return Outcome(CheckStatus.SKIP, probe)
    if not ctx.placements:
        return Outcome(CheckStatus.FAIL, f"release #{ctx.release.pk} has no placements to time")
    latencies: list[float] = []
    began = time.perf_counter()
    for i in range(PROBES):
        placement = ctx.placements[i % len(ctx.placements)]
        try:
            _, took_ms = probes.ask(ctx.version, placement.pk, probe)
        except Refused as refused:
            where = f"probe {i + 1} of {PROBES} was refused by placement {placement.pk}"
            return Outcome(
                CheckStatus.FAIL,
                f"{where} ({refused.status}): {refused}",
                {"probes_answered": i},
            )
        latencies.append(took_ms)
    elapsed_s = time.perf_counter() - began
    p99 = performance.p99_of(latencies)
    assert p99 is not None  # PROBES > 0
    stable = _stable_recent(ctx, now=time.time())
    # Too few requests (the deployment's min_samples) say nothing of stable's p99.
    enough = stable is not None and stable.requests >= ctx.deployment.min_samples
    stable_p99 = stable.p99_ms if stable is not None and enough else None
    verdict = performance.judge(
        p99_ms=p99,
        stable_p99_ms=stable_p99,
        ratio_max=ctx.deployment.p99_ratio_max,
        slo_p99_ms=ctx.deployment.slo_p99_ms,
    )
    evidence: dict[str, Any] = {
        "task": probe.task,
        "probes": PROBES,
        "p99_ms": round(p99, 2),
        "p50_ms": round(sorted(latencies)[len(latencies) // 2], 2),
        "max_ms": round(max(latencies), 2),
        "throughput_rps": round(PROBES / elapsed_s, 2),
        "stable_release": ctx.previous.pk if ctx.previous else None,
        "stable_p99_ms": round(stable_p99, 2) if stable_p99 is not None else None,
        "stable_requests": stable.requests if stable is not None else 0,
        "p99_ratio_max": ctx.deployment.p99_ratio_max,
        "slo_p99_ms": ctx.deployment.slo_p99_ms,
        "benchmark": BENCHMARK_SKIPPED,
    }
    return Outcome(CheckStatus(verdict.status), f"{verdict.reason} ({BENCHMARK_SKIPPED})", evidence)


def _stable_recent(ctx: Context, *, now: float) -> Figures | None:
    """The stable release's figures over the whole buckets of about the last STABLE_WINDOW_S
    (figures.recent: no partial first bucket, none still filling); None: there is no stable release."""
    if ctx.previous is None:
        return None
    _, totals, _ = figures.recent(redis_client(), [ctx.previous.pk], seconds=STABLE_WINDOW_S, now=now)
    return totals[ctx.previous.pk]
