"""Writes for deployments: define and edit them, move them through their states, and ask
for releases (which later issues verify and roll out)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core import audit
from apps.core.transitions import transition
from apps.deployments.domain import naming
from apps.deployments.domain.states import DEPLOYMENT, RELEASE, RELEASE_OPEN, DeploymentState, ReleaseState
from apps.deployments.domain.strategy import Strategy, steps_for
from apps.deployments.models import MAX_REPLICAS, Deployment, Release
from apps.models.domain.states import ValidationState

# Passed for `registered_model` when an update leaves it alone (None clears it).
UNCHANGED: Any = object()


def _field_problems(*, replicas: int | None = None, strategy: str | None = None) -> dict[str, str]:
    problems: dict[str, str] = {}
    if replicas is not None and not 0 <= replicas <= MAX_REPLICAS:
        problems["replicas"] = f"Between 0 and {MAX_REPLICAS}."
    if strategy is not None and strategy not in {s.value for s in Strategy}:
        problems["strategy"] = f"One of {[s.value for s in Strategy]}."
    return problems


def _check_model_change(deployment: Deployment, registered_model: Any) -> None:
    """The model may change only while no release of the old one serves or is in progress."""
    if registered_model is not None and registered_model.pk == deployment.registered_model_id:
        return
    open_release = deployment.releases.filter(state__in=RELEASE_OPEN).first()
    for release in (deployment.current_release, open_release):
        if release is not None:
            raise ValidationError(
                {
                    "registered_model": f"Release #{release.pk} of {release.model_version} is "
                    f"{release.get_state_display().lower()}; the model can change only when no "
                    "release is live or in progress."
                }
            )


@transaction.atomic
def deployment_create(
    *,
    name: str,
    description: str = "",
    registered_model: Any = None,
    replicas: int = 1,
    strategy: str = Strategy.RECREATE,
    created_by: Any = None,
) -> Deployment:
    """A new deployment in DRAFT: it serves nothing until a release is promoted."""
    problems = _field_problems(replicas=replicas, strategy=strategy)
    if problem := naming.name_problem(name):
        problems["name"] = problem
    if problems:
        raise ValidationError(problems)
    deployment = Deployment(
        name=name,
        description=description.strip(),
        registered_model=registered_model,
        replicas=replicas,
        strategy=strategy,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )
    try:
        with transaction.atomic():
            deployment.save()
    except IntegrityError as exc:
        raise ValidationError({"name": f"A deployment named '{name}' already exists."}) from exc
    return deployment


@transaction.atomic
def deployment_update(
    *,
    deployment: Deployment,
    description: str | None = None,
    replicas: int | None = None,
    strategy: str | None = None,
    registered_model: Any = UNCHANGED,
) -> Deployment:
    """Change what was given (None, or UNCHANGED for the model, leaves a field alone); never the name."""
    if deployment.state == DeploymentState.RETIRED:
        raise ValidationError("A retired deployment cannot be edited.")
    if problems := _field_problems(replicas=replicas, strategy=strategy):
        raise ValidationError(problems)
    if registered_model is not UNCHANGED:
        _check_model_change(deployment, registered_model)
        deployment.registered_model = registered_model
    if description is not None:
        deployment.description = description.strip()
    if replicas is not None:
        deployment.replicas = replicas
    if strategy is not None:
        deployment.strategy = strategy
    deployment.save()
    return deployment


def _move(deployment: Deployment, dst: DeploymentState, action: str) -> Deployment:
    current = Deployment.objects.select_for_update().get(pk=deployment.pk)
    old = current.state
    transition(current, dst, machine=DEPLOYMENT)
    audit.record(action, current, changes={"state": [old, dst.value]})
    return current


@transaction.atomic
def deployment_activate(*, deployment: Deployment) -> Deployment:
    """Serve again (from DRAFT or PAUSED)."""
    return _move(deployment, DeploymentState.ACTIVE, "activate")


@transaction.atomic
def deployment_pause(*, deployment: Deployment) -> Deployment:
    """Stop serving, keeping releases and settings as they are."""
    return _move(deployment, DeploymentState.PAUSED, "pause")


@transaction.atomic
def deployment_retire(*, deployment: Deployment) -> Deployment:
    """Retire for good. Refused while a release is verifying or rolling out; pending ones are cancelled."""
    # Lock first, so no release can be created between the check and the move.
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    DEPLOYMENT.check(deployment.state, DeploymentState.RETIRED)
    busy = deployment.releases.filter(state__in=RELEASE_OPEN).exclude(state=ReleaseState.PENDING).first()
    if busy is not None:
        raise ValidationError(
            f"Release #{busy.pk} is {busy.get_state_display().lower()}; let it finish or roll it back first."
        )
    for pending in deployment.releases.filter(state=ReleaseState.PENDING):
        release_cancel(release=pending, reason="Its deployment was retired.")
    return _move(deployment, DeploymentState.RETIRED, "retire")


@transaction.atomic
def release_create(
    *,
    deployment: Deployment,
    model_version: Any,
    strategy: str | None = None,
    steps: list[int] | None = None,
    created_by: Any = None,
) -> Release:
    """Ask to roll a version out to a deployment: a PENDING release. Only valid versions qualify."""
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    problems: dict[str, str] = {}
    if deployment.state == DeploymentState.RETIRED:
        problems["deployment"] = f"'{deployment}' is retired; it takes no new releases."
    elif open_release := deployment.releases.filter(state__in=RELEASE_OPEN).first():
        problems["deployment"] = (
            f"'{deployment}' already has release #{open_release.pk} "
            f"{open_release.get_state_display().lower()}; finish or cancel it first."
        )
    if problem := _version_problem(deployment, model_version):
        problems["model_version"] = problem
    chosen = strategy or deployment.strategy
    chosen_steps: list[int] = []
    if strategy_problems := _field_problems(strategy=chosen):
        problems.update(strategy_problems)
    else:
        try:
            chosen_steps = steps_for(
                chosen,
                steps
                if steps is not None
                else (deployment.canary_steps if chosen == Strategy.CANARY else None),
            )
        except ValueError as exc:
            problems["steps"] = str(exc)
    if problems:
        raise ValidationError(problems)
    if deployment.registered_model_id is None:
        deployment.registered_model_id = model_version.model_id
        deployment.save(update_fields=["registered_model", "updated_at"])
    return Release.objects.create(
        deployment=deployment,
        model_version=model_version,
        strategy=chosen,
        steps=chosen_steps,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )


def _version_problem(deployment: Deployment, version: Any) -> str | None:
    if version.validation_state != ValidationState.VALID:
        why = f": {version.validation_error}" if version.validation_error else ""
        return (
            f"{version} is {version.get_validation_state_display().lower()}{why}. "
            "Only versions that passed validation can be released."
        )
    if version.archived:
        return f"{version} is archived; restore it first."
    if deployment.registered_model_id is not None and version.model_id != deployment.registered_model_id:
        return f"{version} is not a version of '{deployment.registered_model}', which '{deployment}' serves."
    return None


@transaction.atomic
def release_cancel(*, release: Release, reason: str = "") -> Release:
    """Withdraw a release that has not started."""
    current = Release.objects.select_for_update().select_related("deployment").get(pk=release.pk)
    old = current.state
    transition(
        current,
        ReleaseState.CANCELLED,
        machine=RELEASE,
        finished_at=timezone.now(),
        reason=(reason or "Cancelled before it started.")[:300],
    )
    audit.record("cancel", current, changes={"state": [old, ReleaseState.CANCELLED.value]})
    return current
