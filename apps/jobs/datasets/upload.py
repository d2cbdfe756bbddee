"""Writing an uploaded dataset file into the first dataset root, then registering and validating it.

The name is sanitised (no folders, only [A-Za-z0-9._-], a .jsonl or .txt suffix) and never
overwrites: the bytes go to a dot-named temporary file (which scans skip) beside the target,
and are hard-linked to the first free name ("data.jsonl", "data-2.jsonl", ...), which fails
rather than replace a file that appeared meanwhile. The size limit is counted on the bytes
written, whatever the client said.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.core.domain.units import format_bytes
from apps.jobs.datasets import discovery, services
from apps.jobs.domain.datasets import (
    EVAL_SHARE_DEFAULT,
    Source,
    name_from,
    name_problem,
    numbered,
    upload_file_name,
)
from apps.jobs.models import Dataset

# Names tried before an upload gives up (data.jsonl ... data-1000.jsonl all taken).
_NAME_TRIES = 1000


class Upload(Protocol):
    """What an upload needs of Django's UploadedFile."""

    name: str | None
    size: int | None

    def chunks(self, chunk_size: int | None = None) -> Iterable[bytes]: ...


def dataset_upload(
    *,
    file: Upload,
    name: str = "",
    description: str = "",
    eval_share: float = EVAL_SHARE_DEFAULT,
    split_seed: int = 0,
    created_by: Any = None,
) -> Dataset:
    """Write the file into the first dataset root, register it and validate it (at once when small,
    else queued). ValidationError naming `file` or `name` when it is refused; nothing is written then."""
    limit = settings.MOC_DATASET_UPLOAD_MAX_BYTES
    if file.size is not None and file.size > limit:
        raise ValidationError(
            {"file": f"The file is {format_bytes(file.size)}; the limit is {format_bytes(limit)}."}
        )
    try:
        file_name = upload_file_name(file.name or "")
    except ValueError as exc:
        raise ValidationError({"file": f"{exc}."}) from None
    wanted = name or name_from(file_name)
    if problem := name_problem(wanted):
        raise ValidationError({"name": f"{problem}."})
    if name and Dataset.objects.filter(name__iexact=name).exists():
        raise ValidationError({"name": f"A dataset named '{name}' exists already."})
    roots = services.configured_roots()
    if not roots:
        raise ValidationError({"file": "No dataset root is configured (MOC_DATASET_ROOTS)."})
    root = roots[0]
    os.makedirs(root, exist_ok=True)
    path = _write(file, root=root, file_name=file_name, limit=limit)
    try:
        with transaction.atomic():
            found = discovery.stat_found(root, path)
            if found is None:
                raise ValidationError({"file": "The file could not be written to the dataset root."})
            taken = {n.lower() for n in Dataset.objects.values_list("name", flat=True)}
            dataset = services.dataset_register(
                found=found,
                name=wanted if name else services.free_name(wanted, taken),
                source=Source.UPLOADED,
                description=description,
                eval_share=eval_share,
                split_seed=split_seed,
                created_by=created_by,
            )
            return services.dataset_validate_request(dataset=dataset)
    except IntegrityError:
        _remove(root, path)
        raise ValidationError({"name": f"A dataset named '{wanted}' exists already."}) from None
    except BaseException:
        _remove(root, path)
        raise


def _remove(root: str, path: str) -> None:
    """Take back a file whose registration failed: no file in the root without its row."""
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(root, path))


def _write(file: Upload, *, root: str, file_name: str, limit: int) -> str:
    """The bytes written under a free name in `root`; that name."""
    temporary = os.path.join(root, f".upload-{uuid.uuid4().hex}.part")
    try:
        written = 0
        with open(temporary, "xb") as out:
            for chunk in file.chunks():
                written += len(chunk)
                if written > limit:
                    raise ValidationError({"file": f"The file is over the limit of {format_bytes(limit)}."})
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return _link_free(temporary, root=root, file_name=file_name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _link_free(temporary: str, *, root: str, file_name: str) -> str:
    stem, dot, suffix = file_name.rpartition(".")
    for n in range(1, _NAME_TRIES + 1):
        candidate = f"{numbered(stem, n)}{dot}{suffix}"
        try:
            os.link(temporary, os.path.join(root, candidate))
        except FileExistsError:
            continue
        return candidate
    raise ValidationError({"file": f"Names like '{file_name}' are all taken in the dataset root; rename it."})
