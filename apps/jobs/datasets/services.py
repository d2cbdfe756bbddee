"""Writes of datasets: register what a scan found, change what an operator may change, validate.

A scan only stats files; what a file holds is read by validation, in a task on the default queue
(a big file must not hold a web request). A request that asks for the validation of a small file
(under INLINE_VALIDATE_MAX_BYTES: an upload, the Validate button) gets it at once instead, so the
page and the API answer with the verdict rather than "pending".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.core import audit, dispatch
from apps.core.domain.errors import Conflict
from apps.core.transitions import transition
from apps.jobs.datasets import discovery, messages, validation
from apps.jobs.datasets.discovery import FoundDataset, Refusal
from apps.jobs.domain.datasets import EVAL_SHARE_DEFAULT, FILE_ROW, RowProblem, Source, name_from, numbered
from apps.jobs.domain.states import DATASET, DatasetState
from apps.jobs.models import Dataset

INLINE_VALIDATE_MAX_BYTES = 1024 * 1024
GONE = "the file is no longer in its dataset root"


@dataclass(slots=True)
class ScanResult:
    """What one scan of the dataset roots did."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    missing: int = 0  # registered files that are gone (marked invalid, never deleted: jobs refer to them)
    refused: list[Refusal] = field(default_factory=list)
    missing_roots: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "missing": self.missing,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **self.counts(),
            "refused": [{"path": r.path, "reason": r.reason} for r in self.refused],
            "missing_roots": self.missing_roots,
        }


def configured_roots() -> list[str]:
    return discovery.resolve_roots(settings.MOC_DATASET_ROOTS)


def datasets_scan(*, roots: Sequence[str] | None = None) -> ScanResult:
    """Register new dataset files under the roots, mark changed ones pending and gone ones invalid,
    and queue a validation of every pending one. Stat only; safe to run twice or side by side."""
    walk = discovery.walk(configured_roots() if roots is None else roots)
    result = ScanResult(refused=list(walk.refused), missing_roots=list(walk.missing_roots))
    known = {(d.root, d.path): d for d in Dataset.objects.filter(root__in=walk.roots)}
    taken = {name.lower() for name in Dataset.objects.values_list("name", flat=True)}
    for found in walk.found:
        row = known.pop((found.root, found.path), None)
        if row is None:
            result.new += _register_found(found, taken) is not None
        elif row.fingerprint == found.fingerprint or _awaiting_validation(row):
            result.unchanged += 1
        else:
            result.changed += 1
            _mark_changed(row, size=found.size)
    for row in known.values():
        if not (row.state == DatasetState.INVALID and row.fingerprint == ""):
            result.missing += 1
            _mark_gone(row)
    with transaction.atomic():
        pending = Dataset.objects.filter(root__in=walk.roots, state=DatasetState.PENDING, archived=False)
        validations_queue(ids=pending.values_list("pk", flat=True))
    return result


def datasets_scan_request() -> ScanResult:
    """A scan someone asked for (the page's Scan now, the API's scan): run now, and audited."""
    result = datasets_scan()
    audit.record("scan", None, changes={"datasets": [None, result.counts()]})
    return result


def _register_found(found: FoundDataset, taken: set[str]) -> Dataset | None:
    """A new row for a found file; None when another writer registered it meanwhile."""
    try:
        with transaction.atomic():
            return dataset_register(found=found, name=free_name(name_from(found.path), taken))
    except IntegrityError:
        return None


def free_name(wanted: str, taken: set[str]) -> str:
    """`wanted`, or its first numbered alternative not in `taken` (lower case); added to `taken`."""
    n = 1
    while numbered(wanted, n).lower() in taken:
        n += 1
    name = numbered(wanted, n)
    taken.add(name.lower())
    return name


def dataset_register(
    *,
    found: FoundDataset,
    name: str,
    source: Source = Source.DISCOVERED,
    description: str = "",
    eval_share: float = EVAL_SHARE_DEFAULT,
    split_seed: int = 0,
    created_by: Any = None,
) -> Dataset:
    """A new pending dataset for a file under a root; its validation is up to the caller."""
    return Dataset.objects.create(
        name=name,
        description=description,
        root=found.root,
        path=found.path,
        format=found.format.value,
        source=source.value,
        size_bytes=found.size,
        eval_share=eval_share,
        split_seed=split_seed,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )


def _awaiting_validation(dataset: Dataset) -> bool:
    """Registered and never read: its fingerprint comes with its first validation."""
    return dataset.state == DatasetState.PENDING and not dataset.fingerprint


def _mark_changed(dataset: Dataset, *, size: int) -> None:
    if dataset.state == DatasetState.PENDING:
        Dataset.objects.filter(pk=dataset.pk).update(size_bytes=size)
        return
    transition(dataset, DatasetState.PENDING, machine=DATASET, size_bytes=size)


def _mark_gone(dataset: Dataset) -> None:
    errors = [RowProblem(FILE_ROW, GONE).as_json()]
    transition(dataset, DatasetState.INVALID, machine=DATASET, fingerprint="", errors=errors, error_count=1)


def validations_queue(*, ids: Iterable[int]) -> int:
    """Queue a validation of each dataset (sent when the transaction commits); how many."""
    sent = dispatch.send_many_on_commit(messages.DATASET_VALIDATE, [[pk] for pk in ids])
    return len(sent)


@transaction.atomic
def dataset_validate_request(*, dataset: Dataset) -> Dataset:
    """Validate a small file now, or mark a big one pending and queue its validation."""
    if dataset.size_bytes < INLINE_VALIDATE_MAX_BYTES:
        return validation.dataset_validate(dataset=dataset)
    old = dataset.state
    if old != DatasetState.PENDING:
        transition(dataset, DatasetState.PENDING, machine=DATASET)
    audit.record("validation", dataset, changes={"state": [old, DatasetState.PENDING.value]})
    validations_queue(ids=[dataset.pk])
    return dataset


class SplitInUse(Conflict):
    """The split of a dataset some job used cannot move: a later "eval split" evaluation would
    score rows the fine-tune trained on, and a retry would train on other rows than its first try."""

    code = "split_in_use"


# What decides which rows are held out for evaluation.
SPLIT_FIELDS = ("eval_share", "split_seed")


def split_frozen(dataset: Dataset) -> bool:
    """Whether a job refers to the dataset, so its split may no longer change."""
    return dataset.pk is not None and dataset.jobs.exists()


@transaction.atomic
def dataset_update(*, dataset: Dataset, **fields: Any) -> Dataset:
    """Change what an operator may change: description, and the split (eval_share, split_seed) until
    a job refers to the dataset (SplitInUse naming the field then). The rows stay valid, so no
    validation."""
    allowed = {"description", *SPLIT_FIELDS}
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"dataset_update cannot change {', '.join(sorted(unknown))}")
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    moved = [name for name in SPLIT_FIELDS if name in fields and fields[name] != getattr(dataset, name)]
    if moved and split_frozen(dataset):
        raise SplitInUse(
            f"{moved[0]}: jobs have used dataset {dataset.name}, so its split (eval_share, split_seed) "
            "can no longer change; upload the file again under another name for a new split."
        )
    for name, value in fields.items():
        setattr(dataset, name, value)
    dataset.full_clean(exclude=["created_by"])
    dataset.save(update_fields=[*fields, "updated_at"])
    return dataset


@transaction.atomic
def dataset_ensure(
    *,
    root: str,
    path: str,
    name: str,
    description: str = "",
    eval_share: float = EVAL_SHARE_DEFAULT,
    split_seed: int = 0,
) -> Dataset:
    """The dataset of the file at `path` under `root`, registered if it is not (as `name`, or its
    first free alternative, with the description and split given) and validated now if it changed
    since its last validation. For files MOC writes itself (the demo datasets): no worker needed."""
    found = discovery.stat_found(root, path)
    if found is None:
        raise FileNotFoundError(f"{path} is not a dataset file under {root}")
    dataset = Dataset.objects.filter(root=root, path=path).first()
    if dataset is None:
        taken = {n.lower() for n in Dataset.objects.values_list("name", flat=True)}
        dataset = dataset_register(
            found=found,
            name=free_name(name, taken),
            description=description,
            eval_share=eval_share,
            split_seed=split_seed,
        )
    if dataset.fingerprint != found.fingerprint or dataset.state == DatasetState.PENDING:
        dataset = validation.dataset_validate(dataset=dataset)
    return dataset
