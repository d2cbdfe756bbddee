"""Writes for deployments: define and edit them, move them through their states, and ask for
releases (which the rollout engine, apps.deployments.rollout, then moves)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, transaction
from django.db.models import IntegerField
from django.utils import timezone

from apps.core import audit, dispatch
from apps.core.domain.errors import Conflict
from apps.core.domain.roles import Role
from apps.core.transitions import transition
from apps.deployments import messages, wake
from apps.deployments.domain import naming, quality
from apps.deployments.domain.checks import CheckStatus, all_check_names
from apps.deployments.domain.states import (
    DEPLOYMENT,
    RELEASE,
    RELEASE_OPEN,
    DeploymentState,
    Environment,
    OnInconclusive,
    ReleaseState,
    VerificationState,
)
from apps.deployments.domain.strategy import Strategy, steps_for
from apps.deployments.models import Deployment, KeyGrant, Release, ReleaseEvent, VerificationRun
from apps.deployments.rollout import replicas, timeline
from apps.fleet.domain.states import PLACEABLE_HEALTH, NodeState
from apps.fleet.models import Device, Node
from apps.models.domain.states import ValidationState
from apps.models.models import RegisteredModel


def _choice(options: type) -> Callable[[Any], Any]:
    values = [o.value for o in options]  # type: ignore[attr-defined]

    def check(value: Any) -> Any:
        if value not in values:
            raise ValueError(f"One of {values}.")
        return value

    return check


def _limit(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _number(name: str, *, low: float | None = None) -> Callable[[Any], Any]:
    """A check of a number for the deployment field `name`, held to the field's own bounds: its
    validators (MinValueValidator, MaxValueValidator, and the integer range the database holds), which
    services must apply themselves since they do not call full_clean. Whole for an integer field;
    None passes where the field may be empty. `low` only raises the field's lower bound, for a value
    the model takes but serving cannot use."""
    field = Deployment._meta.get_field(name)
    whole = isinstance(field, IntegerField)
    empty = field.null

    def check(value: Any) -> Any:
        if value is None and empty:
            return None
        kinds = int if whole else int | float
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            raise ValueError("A whole number." if whole else "A number.")
        lows = [v.limit_value for v in field.validators if isinstance(v, MinValueValidator)]
        highs = [v.limit_value for v in field.validators if isinstance(v, MaxValueValidator)]
        least = max(lows + ([low] if low is not None else []), default=None)
        most = min(highs, default=None)
        if least is not None and value < least or most is not None and value > most:
            span = (
                f"from {_limit(least)} to {_limit(most)}"
                if least is not None and most is not None
                else (f"at least {_limit(least)}" if least is not None else f"at most {_limit(most)}")
            )
            raise ValueError(f"A number {span}.")
        return value

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("A string.")
    return value.strip()


def _node(value: Any) -> str:
    name = _text(value or "")
    if name and not Node.objects.filter(name=name).exists():
        raise ValueError(f"No node is named '{name}'.")
    return name


def _device(value: Any) -> Device | None:
    if value is None:
        return None
    if not isinstance(value, Device):
        raise ValueError("A device.")
    if value.retired:
        raise ValueError(f"{value} is retired.")
    return value


def _required_checks(value: Any) -> list[str]:
    known = all_check_names()
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise ValueError(f"A list of check names, from {known}.")
    if unknown := [v for v in value if v not in known]:
        raise ValueError(f"Unknown check(s) {unknown}; the checks are {known}.")
    return [name for name in known if name in value]  # in run order, once each


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false.")
    return value


def _golden_set(value: Any) -> list[dict[str, Any]]:
    quality.parse_golden_set(value)
    return list(value)


def _canary_steps(value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ValueError("A list of percentages ending at 100, e.g. [10, 50, 100].")
    return steps_for(Strategy.CANARY, value)


def _owner(value: Any) -> Any:
    if value is not None and not isinstance(value, get_user_model()):
        raise ValueError("A user.")
    return value


def _registered_model(value: Any) -> RegisteredModel | None:
    if value is not None and not isinstance(value, RegisteredModel):
        raise ValueError("A registered model.")
    return value


# Every field of a deployment that create and update take (models.EDITABLE_FIELDS, which the API's
# input and the settings form are built from; tests/deployments/test_services.py holds the two
# equal), with its check (which returns the value to store or raises ValueError with the reason).
EDITABLE: dict[str, Callable[[Any], Any]] = {
    "description": _text,
    "registered_model": _registered_model,
    "environment": _choice(Environment),
    "replicas": _number("replicas"),
    "strategy": _choice(Strategy),
    "node": _node,
    "device": _device,
    "pinned": _flag,
    "keep_alive_s": _number("keep_alive_s"),
    "wake_timeout_s": _number("wake_timeout_s"),
    "max_concurrency": _number("max_concurrency", low=1),
    "max_queue": _number("max_queue"),
    "slo_p99_ms": _number("slo_p99_ms"),
    "slo_error_rate": _number("slo_error_rate"),
    "required_checks": _required_checks,
    "golden_set": _golden_set,
    "canary_steps": _canary_steps,
    "step_pause_s": _number("step_pause_s"),
    "step_timeout_s": _number("step_timeout_s"),
    "min_samples": _number("min_samples"),
    "p99_ratio_max": _number("p99_ratio_max"),
    "error_rate_delta_max": _number("error_rate_delta_max"),
    "on_inconclusive": _choice(OnInconclusive),
    "blue_green_keep_s": _number("blue_green_keep_s"),
    "abort_grace_s": _number("abort_grace_s"),
    "owner": _owner,
}


def _cleaned(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The values to store, and the problems by field name (unknown names included)."""
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, value in fields.items():
        check = EDITABLE.get(name)
        if check is None:
            problems[name] = "Not a field a deployment's owner can set."
            continue
        try:
            values[name] = check(value)
        except ValueError as exc:
            problems[name] = str(exc)
    return values, problems


def _placement_problems(deployment: Deployment) -> dict[str, str]:
    """Constraints that can never hold, whatever the fleet's memory: a device off the node, more
    replicas on one device than one (a device holds one placement of a version)."""
    problems: dict[str, str] = {}
    device = deployment.device
    if device is not None and deployment.node and device.node.name != deployment.node:
        problems["device"] = f"{device} is not on node '{deployment.node}'."
    if device is not None and deployment.replicas > 1:
        problems["replicas"] = (
            f"A device holds one replica of a version; {deployment.replicas} replicas need a node "
            "or no constraint."
        )
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
                    "release is live or in progress. Create a new deployment for the other model."
                }
            )


@transaction.atomic
def deployment_create(*, name: str, created_by: Any = None, **fields: Any) -> Deployment:
    """A new deployment in DRAFT: it serves nothing until a release is promoted. Takes any field
    of EDITABLE by name; the owner is its creator unless given."""
    values, problems = _cleaned(fields)
    if problem := naming.name_problem(name):
        problems["name"] = problem
    if problems:
        raise ValidationError(problems)
    creator = created_by if created_by is not None and created_by.is_authenticated else None
    values.setdefault("owner", creator)
    deployment = Deployment(name=name, created_by=creator, **values)
    if problems := _placement_problems(deployment):
        raise ValidationError(problems)
    try:
        with transaction.atomic():
            deployment.save()
    except IntegrityError as exc:
        raise ValidationError({"name": f"A deployment named '{name}' already exists."}) from exc
    return deployment


@transaction.atomic
def deployment_update(*, deployment: Deployment, **fields: Any) -> Deployment:
    """Change the fields given by name (any of EDITABLE; never the name). None clears a field
    that may be empty and leaves any other alone."""
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    if deployment.state == DeploymentState.RETIRED:
        raise ValidationError("A retired deployment cannot be edited; create a new deployment instead.")
    # None for a field that cannot be empty means "leave it", as partial API updates send it.
    fields = {
        k: v
        for k, v in fields.items()
        if v is not None or k not in EDITABLE or Deployment._meta.get_field(k).null
    }
    values, problems = _cleaned(fields)
    if problems:
        raise ValidationError(problems)
    if "registered_model" in values:
        _check_model_change(deployment, values["registered_model"])
    was = (deployment.pinned, deployment.keep_alive_s)
    for name, value in values.items():
        setattr(deployment, name, value)
    if problems := _placement_problems(deployment):
        raise ValidationError(problems)
    deployment.save()
    if (deployment.pinned, deployment.keep_alive_s) != was:
        # At once, not at the next release: pinned, its stable replicas stay; unpinned, they go
        # after the (new) keep-alive.
        replicas.settle(deployment)
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
    # Nothing ticks a retired deployment's releases again: what they alone hold goes now, or it
    # would stay pinned on its devices for good.
    replicas.deployment_released(deployment=deployment)
    return _move(deployment, DeploymentState.RETIRED, "retire")


def staging_gate(*, deployment: Deployment, model_version: Any) -> tuple[VerificationRun | None, str]:
    """The passed verification of `model_version` on a staging deployment of the same registered
    model that lets it into `deployment`, or None and why no run does.

    A passed run counts only if every check `deployment` requires was required in it and did not
    fail (the bar a run holds its required checks to: pass, warn, or a skip that says why the
    check cannot apply, such as a first release's rollback). A staging deployment that made a
    check optional, or required none, passed whatever that check found, which proves nothing."""
    runs = (
        VerificationRun.objects.filter(
            state=VerificationState.PASSED,
            release__model_version=model_version,
            release__deployment__environment=Environment.STAGING,
            release__deployment__registered_model_id=deployment.registered_model_id or model_version.model_id,
        )
        .select_related("release__deployment")
        .prefetch_related("checks")
        .order_by("-finished_at", "-id")
    )
    needed = deployment.required_checks or []
    latest = ""
    for run in runs:
        found = {check.name: check for check in run.checks.all()}
        short = {
            "not run": [n for n in needed if n not in found],
            "optional there": [n for n in needed if n in found and not found[n].required],
            "failed": [
                n for n in needed if n in found and found[n].required and found[n].status == CheckStatus.FAIL
            ],
        }
        if not any(short.values()):
            return run, ""
        latest = latest or (
            f"its verification #{run.pk} on staging '{run.release.deployment}' passed, but not every "
            f"check '{deployment}' requires ("
            + "; ".join(f"{how}: {', '.join(names)}" for how, names in short.items() if names)
            + ")"
        )
    return None, latest


def _replica_problem(deployment: Deployment) -> str | None:
    """Replicas the fleet cannot take whatever it evicts: more than the devices in scope that accept
    placements (each replica needs a device of its own). One replica anywhere is left to the
    scheduler: a worker may yet register its device. Whether they fit in memory is the
    scheduler's call as the release loads; a refusal then fails the release with its reason."""
    if deployment.replicas <= 1 and deployment.device_id is None and not deployment.node:
        return None
    devices = Device.objects.filter(
        retired_at__isnull=True, health__in=PLACEABLE_HEALTH, node__state=NodeState.ONLINE
    )
    if deployment.device_id is not None:
        devices = devices.filter(pk=deployment.device_id)
    elif deployment.node:
        devices = devices.filter(node__name=deployment.node)
    available = devices.count()
    if deployment.replicas > available:
        where = (
            f"on {deployment.device}"
            if deployment.device_id
            else (f"on node '{deployment.node}'" if deployment.node else "in the fleet")
        )
        return (
            f"{deployment.replicas} replica(s) need as many devices that accept placements; "
            f"{available} {'does' if available == 1 else 'do'} {where}."
        )
    return None


@transaction.atomic
def release_create(
    *,
    deployment: Deployment,
    model_version: Any,
    strategy: str | None = None,
    steps: list[int] | None = None,
    created_by: Any = None,
    override_gate: bool = False,
    acting_role: Role | None = None,
) -> Release:
    """Ask to roll a version out to a deployment: a PENDING release, which the rollout engine then
    moves (a tick is sent once this commits). Only valid versions of the deployment's model; a
    production deployment takes only versions whose verification passed in staging (see
    staging_gate), unless an admin overrides the gate (recorded, audited, on the timeline).

    `acting_role` is the role this request acts with: an API key's role, which may be below its
    owner's (apps.core.api.permissions.request_role), or a page user's own. It alone decides the
    override: an admin's operator-scoped key may not override."""
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    # The version as it is now, locked: a version moved to another model since the caller read it
    # (apps.models.services.version_move) must be judged by the model it belongs to now.
    model_version = (
        type(model_version).objects.select_for_update().select_related("model").get(pk=model_version.pk)
    )
    creator = created_by if created_by is not None and created_by.is_authenticated else None
    problems: dict[str, str] = {}
    if deployment.state == DeploymentState.RETIRED:
        problems["deployment"] = (
            f"'{deployment}' is retired; it takes no new releases. Create a new deployment instead."
        )
    elif open_release := deployment.releases.filter(state__in=RELEASE_OPEN).first():
        # Not a field's fault but the deployment's state: 409, as for any action racing another.
        raise Conflict(
            f"'{deployment}' already has release #{open_release.pk} "
            f"{open_release.get_state_display().lower()}; promote, abort or cancel it first."
        )
    if problem := _version_problem(deployment, model_version):
        problems["model_version"] = problem
    if override_gate and acting_role != Role.ADMIN:
        problems["override_gate"] = (
            "Only an admin may release to production without a passed staging verification; this "
            f"request acts as {acting_role or 'no role'}"
            + (" (its API key's role)." if acting_role is not None else ".")
        )
    overridden = False
    if "model_version" not in problems and deployment.environment == Environment.PRODUCTION:
        passed, why = staging_gate(deployment=deployment, model_version=model_version)
        if passed is None and override_gate:
            overridden = True
        elif passed is None:
            model = deployment.registered_model or model_version.model
            needs = deployment.required_checks or []
            problems["model_version"] = (
                f"{model_version} has no passed verification on a staging deployment of '{model}'"
                + (f" that counts: {why}" if why else "")
                + f". Release it to a staging deployment of '{model}'"
                + (f" that requires {', '.join(needs)}" if needs else "")
                + " first (or an admin may override the gate)."
            )
    chosen = strategy or deployment.strategy
    chosen_steps: list[int] = []
    if chosen not in {s.value for s in Strategy}:
        problems["strategy"] = f"One of {[s.value for s in Strategy]}."
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
    if problem := _replica_problem(deployment):
        problems["replicas"] = problem
    if problems:
        raise ValidationError(problems)
    if deployment.registered_model_id is None:
        deployment.registered_model_id = model_version.model_id
        deployment.save(update_fields=["registered_model", "updated_at"])
    release = Release.objects.create(
        deployment=deployment,
        model_version=model_version,
        strategy=chosen,
        steps=chosen_steps,
        previous_release=deployment.current_release,
        gate_overridden_by=creator if overridden else None,
        created_by=creator,
    )
    timeline.record(
        release,
        kind="transition",
        cause=ReleaseEvent.Cause.OPERATOR,
        actor=creator,
        to_state=release.state,
        message=f"{model_version} asked for, {chosen}",
    )
    if overridden:
        audit.record("override_gate", release, changes={"gate_overridden_by": [None, creator.get_username()]})
        timeline.record(
            release,
            kind="note",
            cause=ReleaseEvent.Cause.OVERRIDE,
            actor=creator,
            message=f"{creator.get_username()} released it to production without a passed staging "
            "verification",
        )
    _keep_stable(deployment, release)
    dispatch.send_on_commit(messages.RELEASE_TICK, args=[release.pk])
    return release


def _keep_stable(deployment: Deployment, release: Release) -> None:
    """While `release` is open, the stable release's replicas stay loaded (replicas.settle): its
    analysis judges it against stable, which must not scale to zero under it. A stable asleep now
    is woken, unless the release recreates (it takes stable's replicas down anyway) or the
    deployment serves nothing now (paused)."""
    replicas.settle(deployment)
    if (
        deployment.current_release_id is None
        or release.strategy == Strategy.RECREATE
        or deployment.state != DeploymentState.ACTIVE
    ):
        return
    waking = wake.wake(deployment.pk)
    if waking.state == "refused":
        timeline.record(
            release,
            kind="note",
            message=f"the stable release #{deployment.current_release_id} has no replica loaded and "
            f"could not be woken: {waking.reason}",
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
    if not RELEASE.can(old, ReleaseState.CANCELLED):
        if RELEASE.can(old, ReleaseState.ABORTED):
            instead = "abort it instead"
        elif RELEASE.can(old, ReleaseState.ROLLED_BACK):
            instead = "roll it back instead"
        else:
            instead = "it has ended, so there is nothing to withdraw"
        raise Conflict(
            f"Release #{current.pk} is {current.get_state_display().lower()}; only a pending release "
            f"can be cancelled: {instead}."
        )
    transition(
        current,
        ReleaseState.CANCELLED,
        machine=RELEASE,
        finished_at=timezone.now(),
        reason=(reason or "Cancelled before it started.")[:300],
    )
    replicas.settle(current.deployment)  # no longer open: the stable's replicas as the deployment says
    audit.record("cancel", current, changes={"state": [old, ReleaseState.CANCELLED.value]})
    return current


@transaction.atomic
def key_grant_create(*, deployment: Deployment, key: Any) -> KeyGrant:
    """Let `key` call `deployment` (through /v1/ and the deployment endpoint); from its first grant
    on the key is limited (ApiKey.limited) to the deployments granted to it, and calls no version
    directly. Refused for a revoked key, and (409) when already granted."""
    if key.revoked:
        raise ValidationError({"key": f"{key} is revoked; it calls nothing."})
    if deployment.state == DeploymentState.RETIRED:
        raise ValidationError(f"'{deployment}' is retired; it serves no requests.")
    try:
        with transaction.atomic():
            grant = KeyGrant.objects.create(key=key, deployment=deployment)
    except IntegrityError:
        raise Conflict(f"{key} may already call '{deployment}'.") from None
    key.limited = True  # as KeyGrant.save marked it in the database
    return grant


@transaction.atomic
def key_grant_delete(*, grant: KeyGrant) -> None:
    """Take a grant back: the key no longer calls that deployment. It stays limited: with no grant
    left it calls none (an admin lifts the limit, clearing the key's `limited` in the admin)."""
    grant.delete()
