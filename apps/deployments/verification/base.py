"""What every check takes and returns: the context of the release it verifies, and its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.deployments.domain.checks import CheckStatus
from apps.deployments.models import Deployment, Release
from apps.models.models import ModelVersion
from apps.serving.models import Placement


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a check came out: a status, one line saying why, and JSON-safe evidence."""

    status: CheckStatus
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A check as the API and pages list it."""

    name: str
    description: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Context:
    """The release a run verifies, read once when the run starts."""

    release: Release
    deployment: Deployment
    version: ModelVersion
    placements: list[Placement]  # the release's, with their device and node
    previous: Release | None  # the stable release when it started: where a rollback returns


def context_for(release: Release) -> Context:
    """The context of `release`, its rows read now."""
    release = Release.objects.select_related(
        "deployment__device__node", "model_version__model", "model_version__serving", "previous_release"
    ).get(pk=release.pk)
    deployment = release.deployment
    previous = release.previous_release
    if previous is None and deployment.current_release_id not in (None, release.pk):
        previous = Release.objects.select_related("model_version__model").get(
            pk=deployment.current_release_id
        )
    placements = list(release.placements.select_related("device__node").order_by("pk"))
    return Context(release, deployment, release.model_version, placements, previous)


def one_line(text: str, limit: int = 300) -> str:
    """`text` as one line of at most `limit` characters (a result's reason)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
