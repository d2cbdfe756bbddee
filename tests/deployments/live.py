"""A deployment serving traffic without a device worker, for the traffic tests: its releases'
placements are LOADED rows on devices whose worker's beat is in Redis, and requests sent to them
are answered by a stand-in for sending (the `asked` fixture of tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release
from apps.serving.models import Placement
from tests.deployments.factories import DeploymentFactory, ReleaseFactory
from tests.serving.test_inference_faults import heard, lm, loaded

ASK = {"task": "generate", "input": {"prompt": "Once upon a time", "max_new_tokens": 4}}


def release_on(deployment: Deployment, *, placed: bool = True, **fields: Any) -> Release:
    """A release of a new causal-LM version, with one LOADED placement whose worker is alive."""
    release = ReleaseFactory(deployment=deployment, model_version=lm(), **fields)
    if placed:
        placement = loaded(release.model_version)
        heard(placement.device.queue)
        release.placements.add(placement)
    return release


def serving(
    *, canary_percent: int | None = None, **deployment: Any
) -> tuple[Deployment, Release, Release | None]:
    """An active deployment with a promoted stable release and, with a share, a canary progressing."""
    d = DeploymentFactory(state=DeploymentState.ACTIVE, **deployment)
    stable = release_on(d, state=ReleaseState.PROMOTED, traffic_percent=100)
    d.current_release = stable
    d.save(update_fields=["current_release"])
    canary = None
    if canary_percent is not None:
        canary = release_on(
            d, state=ReleaseState.PROGRESSING, traffic_percent=canary_percent, strategy="canary"
        )
    return d, stable, canary


def placement_of(release: Release) -> Placement:
    return release.placements.get()
