"""What the parameter rules and the dispatcher need to know about the versions and datasets a job's
parameters name: read here, in a fixed number of queries, into domain.params.Facts; and the device
memory a job reserves before it is dispatched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apps.jobs.domain import memory, params
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
            d.pk: params.DatasetFacts(id=d.pk, name=d.name, state=d.state, rows=d.rows, errors=d.error_count)
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


def need_bytes(kind: str, parsed: Any, version: ModelVersion | None) -> int:
    """The device memory a job of `kind` reserves: what its parameters name (`memory_bytes`), else
    domain.memory's estimate from the version's shape, else (no shape) the registry's inference
    estimate, four times over for training (gradients and AdamW's two moments). 0 for kinds that hold
    no device memory."""
    if kind not in {JobKind.FINE_TUNE, JobKind.EVALUATE, JobKind.BENCHMARK} or version is None:
        return 0
    if parsed.memory_bytes:
        return int(parsed.memory_bytes)
    shape = shape_of(version)
    if shape is None:
        fallback = int(version.estimated_vram_bytes or version.size_bytes or 1)
        return fallback * 4 if kind == JobKind.FINE_TUNE else fallback
    if isinstance(parsed, params.FineTuneParams):
        trainable = (
            memory.lora_trainable(shape, rank=parsed.lora_rank)
            if parsed.method == params.Method.LORA
            else shape.params
        )
        return memory.training_bytes(
            shape, trainable=trainable, batch=parsed.batch_size, seq_len=parsed.seq_len
        )
    if isinstance(parsed, params.BenchmarkParams):
        longest = max(parsed.prompt_lengths) + parsed.new_tokens
        return memory.inference_bytes(shape, batch=max(parsed.batch_sizes), seq_len=longest)
    return memory.inference_bytes(shape, batch=parsed.batch_size, seq_len=parsed.seq_len)
