"""Writes to the model registry: register, edit, archive and restore models; move versions
through validation."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core import audit
from apps.core.transitions import transition
from apps.models.domain import naming
from apps.models.domain.states import VALIDATION, ValidationState
from apps.models.models import ModelVersion, RegisteredModel


def _check_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = name.strip()
    problem = naming.name_problem(name)
    if problem:
        raise ValidationError({"name": problem})
    taken = RegisteredModel.objects.filter(name__iexact=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ValidationError({"name": f"A model named '{name}' already exists (names ignore case)."})
    return name


def _check_tags(tags: Iterable[str]) -> list[str]:
    try:
        return naming.clean_tags(tags)
    except ValueError as exc:
        raise ValidationError({"tags": str(exc)}) from exc


def _save_unique(model: RegisteredModel) -> None:
    # The name check above can race another request; the constraint cannot.
    try:
        with transaction.atomic():
            model.save()
    except IntegrityError as exc:
        raise ValidationError({"name": f"A model named '{model.name}' already exists."}) from exc


@transaction.atomic
def model_register(
    *, name: str, description: str = "", tags: Iterable[str] = (), owner: AbstractBaseUser | None = None
) -> RegisteredModel:
    """A new registered model, with no versions yet."""
    model = RegisteredModel(
        name=_check_name(name), description=description.strip(), tags=_check_tags(tags), owner=owner
    )
    _save_unique(model)
    return model


@transaction.atomic
def model_update(
    *,
    model: RegisteredModel,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
) -> RegisteredModel:
    """Change what was given (None leaves a field as it is)."""
    if name is not None:
        model.name = _check_name(name, exclude_pk=model.pk)
    if description is not None:
        model.description = description.strip()
    if tags is not None:
        model.tags = _check_tags(tags)
    _save_unique(model)
    return model


@transaction.atomic
def model_archive(*, model: RegisteredModel) -> RegisteredModel:
    """Hide a model from everyday lists; its versions and history stay. Archiving twice is harmless."""
    now = timezone.now()
    moved = RegisteredModel.objects.filter(pk=model.pk, archived=False).update(
        archived=True, archived_at=now, updated_at=now
    )
    if moved:
        audit.record("archive", model, changes={"archived": [False, True]})
    model.refresh_from_db()
    return model


@transaction.atomic
def model_restore(*, model: RegisteredModel) -> RegisteredModel:
    """Undo an archive. Restoring a model that is not archived is harmless."""
    moved = RegisteredModel.objects.filter(pk=model.pk, archived=True).update(
        archived=False, archived_at=None, updated_at=timezone.now()
    )
    if moved:
        audit.record("restore", model, changes={"archived": [True, False]})
    model.refresh_from_db()
    return model


@transaction.atomic
def version_validation_start(*, version: ModelVersion) -> bool:
    """Mark a version as being checked; False if another checker already started it."""
    return _move(version, ValidationState.VALIDATING, validation_error="")


@transaction.atomic
def version_validation_finish(*, version: ModelVersion, problems: list[str]) -> bool:
    """Record a check's verdict: VALID with no problems, else INVALID with every problem listed."""
    dst = ValidationState.INVALID if problems else ValidationState.VALID
    return _move(version, dst, validation_error="\n".join(problems), validated_at=timezone.now())


def _move(version: ModelVersion, dst: ValidationState, **changes: object) -> bool:
    old = version.validation_state
    if not transition(version, dst, machine=VALIDATION, field="validation_state", **changes):
        return False
    audit.record("validation", version, changes={"validation_state": [old, dst.value]})
    return True
