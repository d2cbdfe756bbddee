"""What the parameter rules and the dispatcher need to know about the versions and datasets a job's
parameters name: read here, in a fixed number of queries, into domain.params.Facts; and the device
memory a job reserves before it is dispatched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apps.jobs.domain import kinds, memory, params
from apps.jobs.domain.kinds import JobKind
from apps.jobs.models import Dataset
from apps.models.domain.formats import FileFormat, ModelFormat
from apps.models.models import ModelFile, ModelVersion
from apps.models.selectors import version_unusable


def params_facts(kind: str, raw: Any) -> params.Facts:
    """The facts about what `raw` names (only those: domain.params.facts_needed)."""
    version_ids, dataset_ids = params.facts_needed(kind, raw)
    versions = list(ModelVersion.objects.filter(pk__in=version_ids).select_related("model"))
    pickled = set(
        ModelFile.objects.filter(version_id__in=version_ids, format=FileFormat.PYTORCH).values_list(
            "version_id", flat=True
        )
    )
    return params.Facts(
        versions={v.pk: version_facts(v, has_pickle=v.pk in pickled) for v in versions},
        datasets={
            d.pk: params.DatasetFacts(
                id=d.pk, name=d.name, state=d.state, rows=d.rows, errors=d.error_count, archived=d.archived
            )
            for d in Dataset.objects.filter(pk__in=dataset_ids)
        },
    )


def version_facts(version: ModelVersion, *, has_pickle: bool = False) -> params.VersionFacts:
    meta = version.metadata or {}
    return params.VersionFacts(
        id=version.pk,
        label=str(version),
        kind=version.kind,
        format=version.format,
        usable=version_unusable(version),
        hidden_size=_positive(meta.get("hidden_size")),
        context=_positive(meta.get("context_length")),
        params_count=version.params_count,
        has_pickle=has_pickle or version.format == ModelFormat.PYTORCH,
    )


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def shape_of(version: ModelVersion) -> memory.Shape | None:
    """The estimate's picture of a model from what the registry read in its config (an adapter's from
    its base's), or None where something it needs was not there."""
    source = version.parent if version.kind == "adapter" and version.parent_id else version
    meta: Mapping[str, Any] = source.metadata or {}
    hidden, layers, vocab = (
        _positive(meta.get(k)) for k in ("hidden_size", "num_hidden_layers", "vocab_size")
    )
    if not (source.params_count and hidden and layers and vocab):
        return None
    return memory.Shape(params=source.params_count, hidden=hidden, layers=layers, vocab=vocab)


def estimate_bytes(
    kind: str, parsed: Any, version: ModelVersion | None, *, adjustments: Mapping[str, Any] | None = None
) -> int:
    """domain.memory's estimate of the device memory a job of `kind` needs, from the version's shape
    (the base's for an adapter), at the batch an out-of-memory adjustment left it (`adjustments`'
    batch_size, when there is one); without a shape, the registry's inference estimate, four times
    over for training (gradients and AdamW's two moments). 0 for kinds that hold no device memory."""
    if kind not in kinds.DEVICE_KINDS or version is None:
        return 0
    shape = shape_of(version)
    if shape is None:
        fallback = int(version.estimated_vram_bytes or version.size_bytes or 1)
        return fallback * 4 if kind == JobKind.FINE_TUNE else fallback
    if isinstance(parsed, params.FineTuneParams):
        return memory.fine_tune_bytes(
            shape,
            method=parsed.method,
            lora_rank=parsed.lora_rank,
            batch=_adjusted_batch(parsed.batch_size, adjustments),
            seq_len=parsed.seq_len,
        )
    if isinstance(parsed, params.BenchmarkParams):
        return memory.benchmark_bytes(
            shape,
            batch_sizes=parsed.batch_sizes,
            prompt_lengths=parsed.prompt_lengths,
            new_tokens=parsed.new_tokens,
        )
    return memory.inference_bytes(
        shape, batch=_adjusted_batch(parsed.batch_size, adjustments), seq_len=parsed.seq_len
    )


def _adjusted_batch(batch: int, adjustments: Mapping[str, Any] | None) -> int:
    """The batch a run goes on at: the one an out-of-memory adjustment left, when smaller."""
    adjusted = (adjustments or {}).get("batch_size")
    return min(batch, adjusted) if _positive(adjusted) else batch


def need_bytes(
    kind: str, parsed: Any, version: ModelVersion | None, *, adjustments: Mapping[str, Any] | None = None
) -> int:
    """The device memory a job of `kind` reserves: what its parameters name (`memory_bytes`), else
    `estimate_bytes`. job_create refuses a `memory_bytes` below the estimate unless an admin names it
    (services.creating), so for anyone else this is the larger of the two."""
    if kind not in kinds.DEVICE_KINDS or version is None:
        return 0
    if parsed.memory_bytes:
        return int(parsed.memory_bytes)
    return estimate_bytes(kind, parsed, version, adjustments=adjustments)
