"""The staging gate: a version reaches a production deployment only after its verification passed on a
staging deployment of the same model, unless an admin overrides it (recorded, audited, on the timeline)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.core import audit
from apps.core.models import AuditEvent
from apps.deployments import services
from apps.deployments.domain.states import Environment, VerificationState
from apps.deployments.models import ReleaseEvent
from tests.deployments.factories import (
    DeploymentFactory,
    ReleaseFactory,
    ValidVersionFactory,
    VerificationRunFactory,
)
from tests.models.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(dispatched: list) -> None:
    """No worker runs: the tick sent after create is only recorded."""


@pytest.fixture
def model() -> Any:
    return RegisteredModelFactory(name="llama")


@pytest.fixture
def production(model: Any) -> Any:
    return DeploymentFactory(environment=Environment.PRODUCTION, registered_model=model)


def verified_in_staging(
    version: Any, state: str = VerificationState.PASSED, environment: str = Environment.STAGING
) -> None:
    staging = DeploymentFactory(environment=environment, registered_model=version.model)
    VerificationRunFactory(release=ReleaseFactory(deployment=staging, model_version=version), state=state)


def test_production_refuses_a_version_never_verified_in_staging(model: Any, production: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.release_create(deployment=production, model_version=ValidVersionFactory(model=model))

    assert (
        "no passed verification on a staging deployment of 'llama'"
        in caught.value.message_dict["model_version"][0]
    )


@pytest.mark.parametrize("state", [VerificationState.FAILED, VerificationState.RUNNING])
def test_a_run_that_did_not_pass_opens_no_gate(model: Any, production: Any, state: str) -> None:
    version = ValidVersionFactory(model=model)
    verified_in_staging(version, state=state)

    with pytest.raises(ValidationError, match="no passed verification"):
        services.release_create(deployment=production, model_version=version)


def test_a_pass_in_production_does_not_count_as_staging(model: Any, production: Any) -> None:
    version = ValidVersionFactory(model=model)
    verified_in_staging(version, environment=Environment.PRODUCTION)

    with pytest.raises(ValidationError, match="no passed verification"):
        services.release_create(deployment=production, model_version=version)


def test_production_takes_a_version_that_passed_in_staging(model: Any, production: Any) -> None:
    version = ValidVersionFactory(model=model)
    verified_in_staging(version)

    release = services.release_create(deployment=production, model_version=version)

    assert release.gate_overridden_by is None


def test_staging_needs_no_gate(model: Any) -> None:
    staging = DeploymentFactory(environment=Environment.STAGING, registered_model=model)

    assert services.release_create(deployment=staging, model_version=ValidVersionFactory(model=model))


def test_an_admin_overrides_the_gate_on_the_record(
    rf: Any, model: Any, production: Any, admin_user: Any
) -> None:
    request = rf.post("/api/v1/releases/")
    request.user = admin_user
    token = audit.bind_request(request)
    try:
        release = services.release_create(
            deployment=production,
            model_version=ValidVersionFactory(model=model),
            created_by=admin_user,
            override_gate=True,
        )
    finally:
        audit.unbind_request(token)

    assert release.gate_overridden_by == admin_user
    assert AuditEvent.objects.filter(action="override_gate").count() == 1
    event = release.events.get(cause=ReleaseEvent.Cause.OVERRIDE)
    assert (event.actor, "without a passed staging verification" in event.message) == (admin_user, True)


def test_an_operator_cannot_override_the_gate(model: Any, production: Any, operator: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        services.release_create(
            deployment=production,
            model_version=ValidVersionFactory(model=model),
            created_by=operator,
            override_gate=True,
        )

    assert caught.value.message_dict["override_gate"] == [
        "Only an admin may release to production without a passed staging verification."
    ]
