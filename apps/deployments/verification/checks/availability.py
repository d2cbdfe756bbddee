"""availability: the release has the deployment's replicas, each loaded on a healthy device whose
worker is alive."""

from __future__ import annotations

from apps.core import workers
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.verification.base import Context, Outcome
from apps.fleet.domain.states import PLACEABLE_HEALTH
from apps.serving.domain.states import PlacementState

NAME = CheckName.AVAILABILITY
DESCRIPTION = "All replicas placed, loaded, on healthy devices with a live worker"
TIMEOUT_S = 10.0


def run(ctx: Context) -> Outcome:
    wanted = ctx.deployment.replicas
    silences = workers.queues_silence({p.device.queue for p in ctx.placements})
    problems: list[str] = []
    replicas = []
    for p in ctx.placements:
        silence = silences[p.device.queue]
        replicas.append(
            {"placement": p.pk, "state": p.state, "device": str(p.device), "health": p.device.health,
             "worker_alive": silence is None}
        )  # fmt: skip
        if p.state != PlacementState.LOADED:
            problems.append(f"placement {p.pk} is {p.get_state_display().lower()}")
        elif p.device.health not in PLACEABLE_HEALTH:
            problems.append(f"placement {p.pk}'s device {p.device} is {p.device.health}")
        elif silence is not None:
            problems.append(f"placement {p.pk}'s worker ({p.device.queue}) is silent")
    evidence = {"replicas_wanted": wanted, "replicas": replicas}
    if len(ctx.placements) < wanted:
        problems.insert(0, f"{len(ctx.placements)} of {wanted} replicas placed")
    if problems:
        return Outcome(CheckStatus.FAIL, "; ".join(problems), evidence)
    loaded = f"{len(ctx.placements)} of {wanted} replicas"
    return Outcome(CheckStatus.PASS, f"{loaded} loaded and healthy", evidence)
