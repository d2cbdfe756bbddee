"""performance: the release's probe latencies against the version's benchmark baseline (what its
latest benchmark job timed of the same probe, plus MOC_PERF_PATH_ALLOWANCE_MS for the serving path;
no baseline is a note, not a verdict), against the stable release's and against the p99 objective.

Both are warmed up first, then the same probe is timed on the release and, while stable has
placements loaded, on stable, alternately, so both see the same load (the rule, and why medians:
apps.deployments.domain.performance). With nothing of stable loaded, or stable refusing its probes,
the release is held to stable's recent live figures instead.

The probes are sequential, so a slow model or many replicas may not fit them in TIMEOUT_S: the
probing stops at a deadline short of it, and too few probes timed by then is a warning saying so,
not a timeout (which would fail the release and leave this thread probing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain import performance
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.domain.figures import Figures
from apps.deployments.verification import probes
from apps.deployments.verification.base import Context, Outcome
from apps.models.models import ModelVersion
from apps.serving.domain.states import PlacementState
from apps.serving.domain.tasks import GENERATE
from apps.serving.inference import Refused
from apps.serving.models import Placement

NAME = CheckName.PERFORMANCE
DESCRIPTION = "Probe latency against the stable release's, probed alike, and the p99 objective"
TIMEOUT_S = 90.0
PROBES = performance.SAMPLES  # timed, a side
# Unmeasured probes to each placement first: the first inference after a load is cold.
WARMUP = 2
# Stable's figures over this many seconds before the run are its recent latency.
STABLE_WINDOW_S = 300
# Probing ends this long before TIMEOUT_S: time for the rest of the check (stable's live figures,
# the judgement) and for a probe slower than the one before it.
MARGIN_S = 10.0
NO_BENCHMARK = "no benchmark baseline: run a benchmark job on {version} to judge against one"
UNLIKE_BENCHMARK = (
    "the benchmark baseline of {version} has no figure like this probe (its own timing of the probe, or "
    "first-token and per-token latencies): run a benchmark job on {version} again"
)

# A probe sent: the answer and how long it took (ms), as probes.ask; raises inference.Refused.
Ask = Callable[[ModelVersion, int, probes.Probe], tuple[dict[str, Any], float]]


def run(ctx: Context, *, clock: Callable[[], float] = time.monotonic, ask: Ask = probes.ask) -> Outcome:
    """The check; `clock` (seconds) bounds its probing and `ask` sends each probe."""
    deadline = clock() + TIMEOUT_S - MARGIN_S
    probe = probes.probe_for(ctx.version)
    if isinstance(probe, str):
        return Outcome(CheckStatus.SKIP, probe)
    if not ctx.placements:
        return Outcome(CheckStatus.FAIL, f"release #{ctx.release.pk} has no placements to time")
    stable_at, unpaired = _stable_side(ctx, probe)
    timed = _time(ctx, probe, stable_at, _Sender(ask, clock, deadline))
    if isinstance(timed, Outcome):
        return timed
    unpaired = timed.stable_refused or unpaired
    live: Figures | None = None
    if timed.stable_ms:
        baseline: performance.Baseline | None = performance.paired(timed.stable_ms)
    else:
        live = _stable_recent(ctx, now=time.time())
        baseline = None if live is None else performance.live(live, min_requests=ctx.deployment.min_samples)
    expected = performance.benchmark_expected(
        ctx.version.benchmark,
        prompt=probe.data.get("prompt"),
        new_tokens=_new_tokens(probe),
        allowance_ms=settings.MOC_PERF_PATH_ALLOWANCE_MS,
    )
    benchmark = expected.baseline() if expected is not None else None
    no_benchmark = _no_benchmark(ctx.version) if expected is None else ""
    verdict = performance.judge(
        release_ms=timed.release_ms,
        baseline=baseline,
        ratio_max=ctx.deployment.p99_ratio_max,
        slo_p99_ms=ctx.deployment.slo_p99_ms,
        benchmark=benchmark,
    )
    evidence: dict[str, Any] = {
        "task": probe.task,
        "warmup_per_placement": WARMUP,
        "release": performance.latencies(timed.release_ms).to_evidence(),
        "stable_release": ctx.previous.pk if ctx.previous else None,
        "compared_with": baseline.what if baseline is not None else None,
        "unpaired": unpaired or None,
        "p99_ratio_max": ctx.deployment.p99_ratio_max,
        "slo_p99_ms": ctx.deployment.slo_p99_ms,
        "benchmark": _benchmark_evidence(ctx.version, expected) if expected else no_benchmark,
    }
    if timed.stable_ms:
        evidence["stable"] = performance.latencies(timed.stable_ms).to_evidence()
    if live is not None:
        evidence["stable_live"] = {
            "requests": live.requests,
            "seconds": live.seconds,
            "p50_ms": None if live.p50_ms is None else round(live.p50_ms, 2),
            "p99_ms": None if live.p99_ms is None else round(live.p99_ms, 2),
        }
    notes = "; ".join(n for n in (unpaired, no_benchmark) if n)
    reason = f"{verdict.reason} ({notes})" if notes else verdict.reason
    return Outcome(CheckStatus(verdict.status), reason, evidence)


def _new_tokens(probe: probes.Probe) -> int | None:
    """The tokens the probe generates; None for one that generates none (an embedding)."""
    tokens = probe.data.get("max_new_tokens") if probe.task == GENERATE else None
    return tokens if isinstance(tokens, int) else None


def _no_benchmark(version: ModelVersion) -> str:
    """Why the probes are not held to the version's benchmark: it has none, or none like the probe."""
    if not version.benchmark:
        return NO_BENCHMARK.format(version=version)
    return UNLIKE_BENCHMARK.format(version=version)


def _benchmark_evidence(version: ModelVersion, expected: performance.Expected) -> dict[str, Any]:
    """The figure the probes were held to, how it was reached, and where and when the benchmark
    measured it."""
    figures = version.benchmark
    return {
        "expected_ms": round(expected.ms, 2),
        "measured_ms": round(expected.measured_ms, 2),
        "path_allowance_ms": expected.allowance_ms,
        "basis": expected.basis,
        "how": expected.how,
        "note": expected.note or None,
        "what": expected.baseline().what,
        "probe": figures.get("probe"),
        "ttft_ms_p50": figures.get("ttft_ms_p50"),
        "token_ms_p50": figures.get("token_ms_p50"),
        "device": figures.get("device"),
        "at": figures.get("at"),
        "job": figures.get("job"),
    }


@dataclass(frozen=True, slots=True)
class _Timed:
    release_ms: list[float]
    stable_ms: list[float]  # empty: stable was not probed, or refused (stable_refused says how)
    stable_refused: str


class _OutOfTime(Exception):
    """The next probe would not end by the deadline."""


class _Sender:
    """Sends probes while they end by the deadline; the next is expected to take as long as the
    latest (the first as long as nothing)."""

    def __init__(self, ask: Ask, clock: Callable[[], float], deadline: float) -> None:
        self.ask, self.clock, self.deadline = ask, clock, deadline
        self.seconds = deadline - clock()  # the time it has to probe
        self.latest_s = 0.0

    def __call__(self, version: ModelVersion, placement: Placement, probe: probes.Probe) -> float:
        """The probe's latency (ms); raises _OutOfTime instead of sending it past the deadline."""
        began = self.clock()
        if began + self.latest_s > self.deadline:
            raise _OutOfTime
        _, took_ms = self.ask(version, placement.pk, probe)
        self.latest_s = self.clock() - began
        return took_ms


def _time(ctx: Context, probe: probes.Probe, stable_at: list[Placement], send: _Sender) -> _Timed | Outcome:
    """PROBES latencies of the release and as many of stable (from `stable_at`), alternated, after
    WARMUP unmeasured probes to each placement; a failed outcome when the release refuses one, a
    warning when the deadline comes before they are all timed. Stable refusing one ends its side:
    the release is then held to stable's live figures."""
    release_ms: list[float] = []
    stable_ms: list[float] = []
    stable_refused = ""
    # All it would send: warm-ups to every placement, then PROBES timed a side.
    planned = WARMUP * (len(ctx.placements) + len(stable_at)) + PROBES * (2 if stable_at else 1)
    try:
        # Rounds below 0 warm every placement up, unmeasured; from 0 each round times one
        # placement of the release, then one of stable.
        for i in range(-WARMUP, PROBES):
            for placement in _round(ctx.placements, i):
                try:
                    took_ms = send(ctx.version, placement, probe)
                except Refused as refused:
                    which = "a warm-up probe" if i < 0 else f"probe {i + 1} of {PROBES}"
                    return Outcome(
                        CheckStatus.FAIL,
                        f"{which} was refused by placement {placement.pk} ({refused.status}): {refused}",
                        {"probes_answered": len(release_ms)},
                    )
                if i >= 0:
                    release_ms.append(took_ms)
            for placement in _round(stable_at, i):
                assert ctx.previous is not None  # stable_at are its placements
                try:
                    took_ms = send(ctx.previous.model_version, placement, probe)
                except Refused as refused:
                    stable_refused = (
                        f"stable's placement {placement.pk} refused a probe ({refused.status}): {refused}"
                    )
                    stable_at, stable_ms = [], []
                    break
                if i >= 0:
                    stable_ms.append(took_ms)
    except _OutOfTime:
        verdict = performance.too_slow(
            timed=min(len(release_ms), len(stable_ms)) if stable_at else len(release_ms),
            probes=planned,
            probe_ms=send.latest_s * 1000,
            seconds=send.seconds,
        )
        evidence = {
            "task": probe.task,
            "warmup_per_placement": WARMUP,
            "probes_timed": {"release": len(release_ms), "stable": len(stable_ms)},
            "probing_s": round(send.seconds, 1),
            "latest_probe_ms": round(send.latest_s * 1000, 1),
        }
        return Outcome(CheckStatus(verdict.status), verdict.reason, evidence)
    return _Timed(release_ms, stable_ms, stable_refused)


def _round(placements: list[Placement], i: int) -> list[Placement]:
    """What round `i` probes: every placement while warming up (i < 0), then one in turn."""
    if not placements:
        return []
    return placements if i < 0 else [placements[i % len(placements)]]


def _stable_side(ctx: Context, probe: probes.Probe) -> tuple[list[Placement], str]:
    """The stable release's placements loaded now, which its side of the comparison probes; none,
    with why, when there is no stable release, nothing of it is loaded or it answers another probe."""
    if ctx.previous is None:
        return [], "first release: no stable release to probe"
    if probes.probe_for(ctx.previous.model_version) != probe:
        return [], f"release #{ctx.previous.pk} ({ctx.previous.model_version}) answers another probe"
    loaded = list(ctx.previous.placements.filter(state=PlacementState.LOADED).order_by("pk"))
    return loaded, "" if loaded else f"release #{ctx.previous.pk} has nothing loaded to probe"


def _stable_recent(ctx: Context, *, now: float) -> Figures | None:
    """The stable release's figures over the whole buckets of about the last STABLE_WINDOW_S
    (figures.recent: no partial first bucket, none still filling); None: there is no stable release."""
    if ctx.previous is None:
        return None
    _, totals, _ = figures.recent(redis_client(), [ctx.previous.pk], seconds=STABLE_WINDOW_S, now=now)
    return totals[ctx.previous.pk]
