"""Registering one folder or file under a model root as the next version of a named model: what a
job that made weights (a fine-tune, a conversion) calls on its output.

Its files are read exactly as a scan reads them (reading.py), and the version gets the root and
path a scan would give it, so a later scan finds it unchanged rather than registering it again.
It holds the scan's lock while it writes: a scan that started before it would not have the new
version in the tables it loaded, and would register the same folder a second time. Call it outside
a longer transaction: the lock is released when its own transaction ends.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from apps.core import dispatch, redis_clients
from apps.core.domain.errors import Conflict
from apps.models import discovery, messages, services
from apps.models.domain import naming
from apps.models.models import ModelFile, ModelVersion, RegisteredModel
from apps.models.scanning.base import configured_roots, scan_lock
from apps.models.scanning.checksums import checksum_chunks
from apps.models.scanning.reading import CandidateReader, new_version
from apps.models.scanning.requests import validation_request

# How long a registration waits for a running scan to finish before it gives up.
LOCK_WAIT_S = 120.0


def version_register(
    *,
    path: str,
    model_name: str,
    parent: ModelVersion | None,
    lineage: dict[str, Any],
    created_by: Any = None,
) -> ModelVersion:
    """Register the folder or file at `path` (under a model root) as the next version of the model
    named `model_name` (created if absent), derived from `parent`, made as `lineage` says; its
    checksums and validation are queued when the transaction commits.

    Registering a path already registered is idempotent: the version there is returned, moved to
    `model_name` first when a scan had found it as a model of its own (services.version_move's
    rules), with its parent and lineage set. A ValidationError names the field that is wrong;
    Conflict when a scan holds the roots for longer than LOCK_WAIT_S.
    """
    found = discovery.candidate_at(path, configured_roots())
    if isinstance(found, discovery.Refusal):
        raise ValidationError({"path": f"{path}: {found.reason}"})
    name = model_name.strip()
    if problem := naming.name_problem(name):
        raise ValidationError({"model_name": problem})
    lock = scan_lock(redis_clients.redis_client(), wait_s=LOCK_WAIT_S)
    if not lock.acquire():
        raise Conflict(f"a scan has been walking the model roots for over {LOCK_WAIT_S:g} s; try again")
    try:
        with transaction.atomic():
            model = _model(name, created_by)
            existing = ModelVersion.objects.filter(root=found.root, path=found.abspath).first()
            if existing is not None:
                return _adopt(existing, model, parent=parent, lineage=lineage)
            return _create(found, model, parent=parent, lineage=lineage, created_by=created_by)
    finally:
        if lock.owned():
            lock.release()


def _model(name: str, created_by: Any) -> RegisteredModel:
    """The model named `name` (names ignore case), created if absent; its row locked, so that the
    next version number cannot race another registration."""
    model = RegisteredModel.objects.select_for_update().filter(name__iexact=name).first()
    if model is None:
        try:
            model = services.model_register(name=name, owner=created_by)
        except ValidationError:  # created meanwhile by another request
            model = RegisteredModel.objects.select_for_update().filter(name__iexact=name).first()
            if model is None:
                raise
    if model.archived:
        raise ValidationError({"model_name": f"{model.name} is archived: restore it first."})
    return model


def _create(
    found: discovery.Candidate,
    model: RegisteredModel,
    *,
    parent: ModelVersion | None,
    lineage: dict[str, Any],
    created_by: Any,
) -> ModelVersion:
    reader = CandidateReader(configured_roots())
    files: list[ModelFile] = []
    reader.read_candidate(found, None, {}, files, [])
    version = new_version(found, files, created_by=created_by)
    version.model = model
    version.number = (model.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    version.parent = parent  # a new version descends from nothing yet: no loop to check
    version.lineage = lineage
    version.save()
    for file in files:
        file.version_id = version.pk
    ModelFile.objects.bulk_create(files)
    sizes = {file.pk: file.size_bytes for file in files}
    dispatch.send_many_on_commit(messages.REGISTRY_CHECKSUM, [[chunk] for chunk in checksum_chunks(sizes)])
    validation_request(version=version)
    return version


def _adopt(
    version: ModelVersion, model: RegisteredModel, *, parent: ModelVersion | None, lineage: dict[str, Any]
) -> ModelVersion:
    """The version already registered at the path, made a version of `model` with this lineage."""
    if version.model_id != model.pk:
        version = services.version_move(version=version, model=model)
    if version.parent_id != (parent.pk if parent is not None else None):
        version = services.version_set_parent(version=version, parent=parent)
    if lineage and version.lineage != lineage:
        version.lineage = lineage
        version.save(update_fields=["lineage", "updated_at"])
    return version
