"""The staging gate: a version reaches a production deployment only after its verification passed on a
staging deployment of the same model, unless an admin overrides it (recorded, audited, on the timeline)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.core import audit
from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from apps.deployments import services
from apps.deployments.domain.checks import CheckStatus, all_check_names
from apps.deployments.domain.states import Environment, VerificationState
from apps.deployments.models import ReleaseEvent
from tests.deployments.factories import (
    CheckResultFactory,
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
    version: Any,
    state: str = VerificationState.PASSED,
    environment: str = Environment.STAGING,
    checks: dict[str, tuple[str, bool]] | None = None,
) -> Any:
    """A run of `version` on a new staging deployment of its model, with a stored result per check:
    {name: (status, required)}, every check passed and required unless given."""
    staging = DeploymentFactory(environment=environment, registered_model=version.model)
    run = VerificationRunFactory(
        release=ReleaseFactory(deployment=staging, model_version=version), state=state
    )
    results = {name: (CheckStatus.PASS, True) for name in all_check_names()}
    for name, (status, required) in {**results, **(checks or {})}.items():
        CheckResultFactory(run=run, name=name, status=status, required=required)
    return run


def override(production: Any, by: Any, acting_role: Role | None = None) -> Any:
    """Ask for a release of a new version to `production` overriding the gate, as `by` acting as
    `acting_role`."""
    return services.release_create(
        deployment=production,
        model_version=ValidVersionFactory(model=production.registered_model),
        created_by=by,
        override_gate=True,
        acting_role=acting_role,
    )


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


def test_an_admin_overrides_the_gate_on_the_record(rf: Any, production: Any, admin_user: Any) -> None:
    request = rf.post("/api/v1/releases/")
    request.user = admin_user
    token = audit.bind_request(request)
    try:
        release = override(production, admin_user, Role.ADMIN)
    finally:
        audit.unbind_request(token)

    assert release.gate_overridden_by == admin_user
    assert AuditEvent.objects.filter(action="override_gate").count() == 1
    event = release.events.get(cause=ReleaseEvent.Cause.OVERRIDE)
    assert (event.actor, "without a passed staging verification" in event.message) == (admin_user, True)


def test_an_operator_cannot_override_the_gate(production: Any, operator: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        override(production, operator, Role.OPERATOR)

    assert caught.value.message_dict["override_gate"] == [
        "Only an admin may release to production without a passed staging verification; this "
        "request acts as operator (its API key's role)."
    ]


def test_an_admin_acting_with_an_operator_key_cannot_override_the_gate(
    production: Any, admin_user: Any
) -> None:
    # the user is an admin, but the request acts with the role of the key it was made with
    with pytest.raises(ValidationError) as caught:
        override(production, admin_user, Role.OPERATOR)

    assert "this request acts as operator" in caught.value.message_dict["override_gate"][0]
    assert not production.releases.exists()


def test_no_acting_role_overrides_nothing(production: Any, admin_user: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        override(production, admin_user)

    assert "this request acts as no role." in caught.value.message_dict["override_gate"][0]


# which staging runs count: the production deployment's required checks, required there and not failed


def test_a_staging_run_that_required_no_checks_opens_no_gate(model: Any, production: Any) -> None:
    # given: staging required no check, so a run whose security and quality failed still passed
    version = ValidVersionFactory(model=model)
    checks = {name: (CheckStatus.PASS, False) for name in all_check_names()}
    checks.update(security=(CheckStatus.FAIL, False), quality=(CheckStatus.FAIL, False))
    run = verified_in_staging(version, checks=checks)

    with pytest.raises(ValidationError) as caught:
        services.release_create(deployment=production, model_version=version)

    message = caught.value.message_dict["model_version"][0]
    assert f"its verification #{run.pk} on staging '{run.release.deployment}' passed, but not" in message
    assert "(optional there: health, availability, api_endpoint, database, performance, security" in message
    assert "Release it to a staging deployment of 'llama' that requires health, availability" in message


def test_a_check_production_requires_that_staging_ran_as_optional_keeps_the_gate_shut(
    model: Any,
) -> None:
    production = DeploymentFactory(
        environment=Environment.PRODUCTION, registered_model=model, required_checks=["health", "security"]
    )
    version = ValidVersionFactory(model=model)
    verified_in_staging(version, checks={"security": (CheckStatus.FAIL, False)})

    with pytest.raises(ValidationError) as caught:
        services.release_create(deployment=production, model_version=version)

    assert "(optional there: security)" in caught.value.message_dict["model_version"][0]
    assert "that requires health, security first" in caught.value.message_dict["model_version"][0]


def test_a_check_the_staging_run_did_not_make_keeps_the_gate_shut(model: Any, production: Any) -> None:
    version = ValidVersionFactory(model=model)
    run = verified_in_staging(version)
    run.checks.filter(name="monitoring").delete()

    with pytest.raises(ValidationError, match=r"\(not run: monitoring\)"):
        services.release_create(deployment=production, model_version=version)


def test_a_failed_required_check_of_a_passed_run_keeps_the_gate_shut(model: Any, production: Any) -> None:
    version = ValidVersionFactory(model=model)
    verified_in_staging(version, checks={"quality": (CheckStatus.FAIL, True)})

    with pytest.raises(ValidationError, match=r"\(failed: quality\)"):
        services.release_create(deployment=production, model_version=version)


def test_checks_production_does_not_require_may_have_been_optional_in_staging(model: Any) -> None:
    production = DeploymentFactory(
        environment=Environment.PRODUCTION, registered_model=model, required_checks=["health"]
    )
    version = ValidVersionFactory(model=model)
    verified_in_staging(version, checks={"quality": (CheckStatus.FAIL, False)})

    assert services.release_create(deployment=production, model_version=version)


def test_a_required_check_that_skipped_saying_why_counts(model: Any, production: Any) -> None:
    # a staging deployment's first release has nothing to roll back to: rollback skips
    version = ValidVersionFactory(model=model)
    verified_in_staging(
        version, checks={"rollback": (CheckStatus.SKIP, True), "performance": (CheckStatus.WARN, True)}
    )

    assert services.release_create(deployment=production, model_version=version)


def test_any_passed_run_that_counts_opens_the_gate(model: Any, production: Any) -> None:
    version = ValidVersionFactory(model=model)
    counts = verified_in_staging(version)
    verified_in_staging(version, checks={"health": (CheckStatus.FAIL, False)})  # newer, does not count

    run, why = services.staging_gate(deployment=production, model_version=version)

    assert (run, why) == (counts, "")
