"""health: every placement of the release answers a probe inference."""

from __future__ import annotations

from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.verification import probes
from apps.deployments.verification.base import Context, Outcome
from apps.serving.inference import Refused

NAME = CheckName.HEALTH
DESCRIPTION = "Each placement of the release answers a probe inference"
TIMEOUT_S = 60.0


def run(ctx: Context) -> Outcome:
    probe = probes.probe_for(ctx.version)
    if isinstance(probe, str):
        return Outcome(CheckStatus.SKIP, probe)
    if not ctx.placements:
        return Outcome(CheckStatus.FAIL, f"release #{ctx.release.pk} has no placements to probe")
    answered: dict[str, float] = {}
    for placement in ctx.placements:
        try:
            _, took_ms = probes.ask(ctx.version, placement.pk, probe)
        except Refused as refused:
            where = f"placement {placement.pk} on {placement.device}"
            return Outcome(
                CheckStatus.FAIL,
                f"{where} refused the probe ({refused.status}): {refused}",
                {
                    "task": probe.task,
                    "answered_ms": answered,
                    "refused": placement.pk,
                    "code": refused.status,
                },  # fmt: skip
            )
        answered[str(placement.pk)] = round(took_ms, 1)
    slowest = max(answered.values())
    return Outcome(
        CheckStatus.PASS,
        f"{len(answered)} placement(s) answered a {probe.task} probe, the slowest in {slowest:.0f} ms",
        {"task": probe.task, "answered_ms": answered},
    )
