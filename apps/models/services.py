"""Writes to the model registry: register, edit, archive and restore models; move versions
through validation; set and clear aliases; make a version one of another model; record a
version's evaluations and benchmark baseline (what jobs measured of it)."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import Max
from django.utils import timezone

from apps.core import audit
from apps.core.transitions import transition
from apps.models import signals
from apps.models.domain import naming
from apps.models.domain.states import VALIDATION, ValidationState
from apps.models.models import ModelAlias, ModelVersion, RegisteredModel


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
    return _validation_move(version, ValidationState.VALIDATING, validation_error="")


@transaction.atomic
def version_validation_finish(
    *, version: ModelVersion, problems: list[str], report: list[dict] | None = None
) -> bool:
    """Record a check's verdict: VALID with no problems, else INVALID with every problem listed.

    `report` (one line per check) is stored with the verdict, so the two never disagree.
    """
    dst = ValidationState.INVALID if problems else ValidationState.VALID
    changes: dict[str, object] = {"validation_error": "\n".join(problems), "validated_at": timezone.now()}
    if report is not None:
        changes["validation_report"] = report
    return _validation_move(version, dst, **changes)


def _validation_move(version: ModelVersion, dst: ValidationState, **changes: object) -> bool:
    old = version.validation_state
    if not transition(version, dst, machine=VALIDATION, field="validation_state", **changes):
        return False
    audit.record("validation", version, changes={"validation_state": [old, dst.value]})
    return True


@transaction.atomic
def alias_set(*, model: RegisteredModel, name: str, version: ModelVersion) -> tuple[ModelAlias, bool]:
    """Point the model's alias `name` at `version`, creating it or moving it in one step.

    Returns the alias and whether it was created. Refuses another model's version, an archived
    one, and an invalid one (an alias is what deployments load), saying why.
    """
    name = name.strip()
    if problem := naming.alias_problem(name):
        raise ValidationError({"name": problem})
    if version.model_id != model.pk:
        raise ValidationError({"version": f"Version {version.pk} belongs to another model."})
    if version.archived:
        raise ValidationError({"version": f"Version {version.number} is archived."})
    if version.validation_state == ValidationState.INVALID:
        why = version.validation_error or "see its validation report"
        raise ValidationError({"version": f"Version {version.number} is invalid: {why}"})
    # The row lock makes a concurrent move wait, so the alias ends on one version, never two.
    alias = ModelAlias.objects.select_for_update().filter(model=model, name=name).first()
    created = alias is None
    if alias is None:
        try:
            with transaction.atomic():
                alias = ModelAlias.objects.create(model=model, name=name, version=version)
        except IntegrityError:
            # Another request created it between the lookup and the insert: move that one.
            alias = ModelAlias.objects.select_for_update().get(model=model, name=name)
            created = False
    if not created and alias.version_id != version.pk:
        alias.version = version
        alias.save(update_fields=["version", "updated_at"])
    return alias, created


@transaction.atomic
def alias_clear(*, model: RegisteredModel, name: str) -> bool:
    """Remove the model's alias `name`; False when it did not exist (clearing twice is harmless)."""
    deleted, _ = ModelAlias.objects.filter(model=model, name=name).delete()
    return deleted > 0


@transaction.atomic
def version_set_parent(*, version: ModelVersion, parent: ModelVersion | None) -> ModelVersion:
    """Record what `version` was derived from (fine-tuned, quantised, converted); None clears it.

    The parent may belong to another model (a fine-tune registered under its own name), but
    lineage must stay a tree: a version can never descend from itself.
    """
    if parent is not None:
        ancestor: ModelVersion | None = parent
        seen: set[int] = set()
        while ancestor is not None and ancestor.pk not in seen:
            if ancestor.pk == version.pk:
                raise ValidationError({"parent": f"{parent} descends from {version}: lineage cannot loop."})
            seen.add(ancestor.pk)
            ancestor = ancestor.parent
    version.parent = parent
    version.save(update_fields=["parent", "updated_at"])
    return version


@transaction.atomic
def version_record_evaluation(*, version: ModelVersion, key: str, figures: dict) -> None:
    """Store an evaluation's figures (loss, perplexity, exact match, the job ...) as the version's
    latest under `key` (a dataset's split or a golden set: measured.dataset_key, measured.golden_key),
    with when it was recorded. The row is locked so that two evaluations finishing together each
    keep their key."""
    key = key.strip()
    if not key:
        raise ValidationError({"key": "An evaluation needs a key (the dataset it was measured on)."})
    locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
    old = locked.evaluations.get(key)
    locked.evaluations = {**locked.evaluations, key: {**figures, "at": timezone.now().isoformat()}}
    locked.save(update_fields=["evaluations", "updated_at"])
    audit.record("evaluation", locked, changes={f"evaluations.{key}": [old, locked.evaluations[key]]})
    version.evaluations = locked.evaluations


@transaction.atomic
def version_record_benchmark(*, version: ModelVersion, figures: dict) -> None:
    """Make `figures` (a benchmark job's load time, first-token and per-token latencies, throughput,
    peak memory, device, when) the version's performance baseline, replacing the last one."""
    locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
    old = locked.benchmark
    locked.benchmark = dict(figures)
    locked.save(update_fields=["benchmark", "updated_at"])
    audit.record("benchmark", locked, changes={"benchmark": [old or None, locked.benchmark]})
    version.benchmark = locked.benchmark


@transaction.atomic
def version_archive(*, version: ModelVersion) -> ModelVersion:
    """Hide a version from everyday lists; its files, report and history stay. Refused while an
    alias points at it (move the alias first), since deployments load versions by alias."""
    if names := sorted(version.aliases.values_list("name", flat=True)):
        raise ValidationError(
            {"version": f"Aliases {', '.join(names)} point at {version}: move or clear them first."}
        )
    now = timezone.now()
    if ModelVersion.objects.filter(pk=version.pk, archived=False).update(
        archived=True, archived_at=now, updated_at=now
    ):
        audit.record("archive", version, changes={"archived": [False, True]})
    version.refresh_from_db()
    return version


@transaction.atomic
def version_restore(*, version: ModelVersion) -> ModelVersion:
    """Undo a version's archive. Restoring one that is not archived is harmless."""
    if ModelVersion.objects.filter(pk=version.pk, archived=True).update(
        archived=False, archived_at=None, updated_at=timezone.now()
    ):
        audit.record("restore", version, changes={"archived": [True, False]})
    version.refresh_from_db()
    return version


@transaction.atomic
def version_move(*, version: ModelVersion, model: RegisteredModel) -> ModelVersion:
    """Make `version` the next-numbered version of `model`, and delete the model it leaves empty.

    A scan registers every folder it finds as a model of its own at v1; this makes a retrained
    model's folder a new version of the model it retrains, so that a deployment of that model
    can release it. Only a model's sole version moves, and only while nothing depends on it
    being what it is: no alias of it or of its model, nothing above the registry using the
    version now (each app answers signals.version_moving: serving an active placement, deployments
    a live or open release; what is only history, a placement unloaded or a release ended, stays
    and follows it), and nothing outside the registry keeping its model from being deleted (a
    deployment of it). The model it leaves is then empty and deleted (its name is free again).
    The version keeps its id, path and files, so the next scan, which matches versions by path,
    leaves it where it now is. Each refusal is a ValidationError under `model` or `version`.
    """
    # Both models' rows locked in one order: two moves between the same models cannot deadlock,
    # and the numbering cannot race a concurrent move into `model`.
    locked = {
        m.pk: m
        for m in RegisteredModel.objects.select_for_update()
        .filter(pk__in={model.pk, version.model_id})
        .order_by("pk")
    }
    version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    if model.pk not in locked:
        raise ValidationError({"model": f"Model {model.pk} no longer exists."})
    source, target = version.model, locked[model.pk]
    if target.pk == source.pk:
        raise ValidationError({"model": f"{version} is already a version of {target.name}."})
    if target.archived:
        raise ValidationError({"model": f"{target.name} is archived: restore it first."})
    if (count := source.versions.count()) > 1:
        raise ValidationError(
            {
                "version": f"{source.name} has {count} versions: only a model's sole version "
                "moves, as the model it leaves is deleted."
            }
        )
    aliases = ModelAlias.objects.filter(models.Q(model=source) | models.Q(version=version))
    if names := sorted({f"{a.model.name}@{a.name}" for a in aliases.select_related("model")}):
        raise ValidationError(
            {"version": f"Aliases {', '.join(names)} point at {version}: clear them first."}
        )
    answers = signals.version_moving.send(sender=ModelVersion, version=version, model=target)
    if held := [*(answer for _, answer in answers if answer), *_referred_by(source)]:
        raise ValidationError(
            {"version": f"{version} is in use ({'; '.join(held)}): it can only move while unused."}
        )
    old_number = version.number
    number = (target.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    ModelVersion.objects.filter(pk=version.pk).update(model=target, number=number, updated_at=timezone.now())
    version.refresh_from_db()
    audit.record(
        "move", version, changes={"model": [source.name, target.name], "number": [old_number, number]}
    )
    source.delete()
    return version


def _referred_by(obj: models.Model) -> list[str]:
    """What outside the registry refers to `obj` and would keep it from being deleted, e.g.
    "deployments 4, 9": the rows whose foreign key to it is PROTECT or RESTRICT, where history
    that may follow it is CASCADE or SET_NULL. The registry imports no app above it; the foreign
    keys say it."""
    held = []
    for relation in obj._meta.related_objects:
        related = relation.related_model
        if relation.on_delete not in (models.PROTECT, models.RESTRICT) or (
            related._meta.app_label == obj._meta.app_label
        ):
            continue
        rows = related._base_manager.filter(**{relation.field.name: obj})
        if named := signals.rows_named(str(related._meta.verbose_name_plural), rows):
            held.append(named)
    return held
