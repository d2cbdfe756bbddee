"""A deployment of the demo LM served live through the data plane, as a user meets it: a real
device worker (simulated GPU) holding the model, a deployment whose promoted release holds that
placement, a real uvicorn running moc_site.asgi:application, and an operator's API key.

Used by tests/integration/test_openai_api.py and test_dataplane_nginx.py (which import the
fixtures by name, as pytest finds them in the test module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from apps.core import services
from apps.core.domain.roles import Role
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release
from apps.models import demo
from apps.models.models import ModelVersion
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement

# The serving tests' fixtures: a device worker on a simulated GPU, the demo models registered.
from tests.integration.test_serving import registered, serving_worker, settled  # noqa: F401
from tests.procs import Process

NAME = "demo-lm"


def deployed(
    version: ModelVersion, placements: Iterable[Placement] = (), *, name: str = NAME, **fields: Any
) -> Deployment:
    """An active deployment `name` whose promoted release of `version` holds `placements` (the
    rollout engine's work, set here directly); `fields` are the deployment's own settings."""
    deployment = Deployment.objects.create(name=name, state=DeploymentState.ACTIVE, **fields)
    release = Release.objects.create(
        deployment=deployment, model_version=version, state=ReleaseState.PROMOTED, traffic_percent=100
    )
    release.placements.add(*placements)
    deployment.current_release = release
    deployment.save(update_fields=["current_release"])
    return deployment


def loaded(version: ModelVersion) -> Placement:
    """`version` loaded on the running worker's device."""
    placement = settled(
        placing.placement_load(version=version), {PlacementState.LOADED, PlacementState.FAILED}
    )
    assert placement.state == PlacementState.LOADED, placement.error
    return placement


@pytest.fixture
def operator_key(make_user: Callable[..., Any]) -> str:
    """The secret of an operator's API key (an operator may call deployments)."""
    _, secret = services.api_key_create(
        owner=make_user(Role.OPERATOR), name="sdk", role=Role.OPERATOR, acting_role=Role.OPERATOR
    )
    return secret


@dataclass(frozen=True, slots=True)
class Served:
    deployment: Deployment
    version: ModelVersion
    placement: Placement


@pytest.fixture
def served(
    serving_worker: Callable[[], Process],  # noqa: F811
    registered: dict[str, ModelVersion],  # noqa: F811
) -> Served:
    """The demo LM loaded on a live worker and released as deployment NAME (pinned)."""
    serving_worker()
    version = registered[demo.BASE]
    placement = loaded(version)
    return Served(deployed(version, [placement], pinned=True), version, placement)
