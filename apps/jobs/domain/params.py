"""Each kind's parameters: their names, types and defaults, and the rules a job's parameters must
meet before it is queued (a 400 naming the field, never a job that fails a minute later).

Pure Python. The job services gather the facts the rules need (the base version's width and
context, the dataset's state) into `Facts`; the runners read the parsed dataclasses, so the names
here are the only names there are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from apps.jobs.domain import kinds
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.param_reading import Problems, Reader, is_whole


class Method(StrEnum):
    FULL = "full"  # every weight trained
    LORA = "lora"  # low-rank adapters (peft); the output is an adapter on the base version


@dataclass(frozen=True, slots=True)
class FineTuneParams:
    base_version: int  # the ModelVersion id fine-tuned (a causal LM in a Hugging Face folder)
    dataset: int  # the Dataset id trained on (valid)
    method: Method = Method.FULL
    learning_rate: float = 5e-4
    epochs: float = 1.0  # used when max_steps is 0
    max_steps: int = 0  # optimiser steps; 0: as many as `epochs` take
    batch_size: int = 8
    grad_accum: int = 1
    seq_len: int = 128  # tokens per example (truncated); at most the model's context
    eval_interval: int = 0  # steps between evaluations on the dataset's eval split; 0: only at the end
    checkpoint_interval: int = 50  # steps between checkpoints; 0: only on stop and at the end
    seed: int = 0
    lora_rank: int = 8  # LoRA only; at most the model's hidden width
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    output_name: str = ""  # the registered model the output joins; "" : the base version's model
    memory_bytes: int = 0  # device memory to reserve; 0: MOC's estimate (domain.memory)


@dataclass(frozen=True, slots=True)
class EvaluateParams:
    version: int  # the ModelVersion id evaluated
    dataset: int | None = None  # loss and perplexity over its eval split (or all rows, `split`)
    split: str = "eval"  # eval | train | all
    golden: tuple[tuple[str, str], ...] = ()  # (prompt, expected) pairs scored by exact match
    max_new_tokens: int = 32  # per golden prompt, greedy
    seq_len: int = 256
    batch_size: int = 8
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class BenchmarkParams:
    version: int  # the ModelVersion id benchmarked
    batch_sizes: tuple[int, ...] = (1, 4)
    prompt_lengths: tuple[int, ...] = (16, 128)  # tokens
    new_tokens: int = 32  # generated per request, greedy
    repeats: int = 5  # timed runs per (batch size, prompt length), after one warm-up
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ConvertParams:
    version: int  # the ModelVersion id whose pickle checkpoint is converted (admin only)
    output_name: str = ""  # the registered model the output joins; "": the source's model


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules need to know about the things the parameters name (the services look them up;
    None where the id names nothing)."""

    versions: dict[int, VersionFacts] = field(default_factory=dict)
    datasets: dict[int, DatasetFacts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VersionFacts:
    id: int
    label: str  # "demo-gpt2 v1"
    kind: str  # causal-lm, embedding, adapter, ...
    format: str  # hf, safetensors, gguf, onnx, pytorch, ...
    usable: str | None  # why it cannot be used (invalid, archived), or None
    hidden_size: int | None  # the model's width (LoRA rank bound)
    context: int | None  # its context length (sequence length bound)
    params_count: int | None
    has_pickle: bool = False  # holds a pickle checkpoint (convert's input)


@dataclass(frozen=True, slots=True)
class DatasetFacts:
    id: int
    name: str
    state: str  # pending / valid / invalid
    rows: int
    errors: int
    archived: bool = False


# --- Parsing: the one entry point job_create goes through --------------------------------------

Params = FineTuneParams | EvaluateParams | BenchmarkParams | ConvertParams

# Bounds wide enough for any real run, tight enough that a typo (an extra zero or three) is caught.
MAX_STEPS_LIMIT = 10_000_000
EPOCHS_LIMIT = 10_000.0
BATCH_LIMIT = 4096
GRAD_ACCUM_LIMIT = 1024
SEQ_LEN_LIMIT = 1_048_576
NEW_TOKENS_LIMIT = 4096
SEED_LIMIT = 2**32 - 1
REPEATS_LIMIT = 100
SPLITS = ("eval", "train", "all")
CAUSAL_LM, ADAPTER, HF_FOLDER, PYTORCH = "causal-lm", "adapter", "hf", "pytorch"

_KIND_CLASSES: dict[str, type[Params]] = {
    JobKind.FINE_TUNE: FineTuneParams,
    JobKind.EVALUATE: EvaluateParams,
    JobKind.BENCHMARK: BenchmarkParams,
    JobKind.CONVERT: ConvertParams,
}
# The parameters that name a model version, and the one that names a dataset.
_VERSION_KEYS = ("base_version", "version")
_DATASET_KEY = "dataset"


def facts_needed(kind: str, raw: Any) -> tuple[set[int], set[int]]:
    """The ids of the versions and datasets `raw` names, so the services look up only those."""
    if kind not in _KIND_CLASSES or not isinstance(raw, Mapping):
        return set(), set()
    versions = {raw[k] for k in _VERSION_KEYS if is_whole(raw.get(k))}
    datasets = {raw[_DATASET_KEY]} if is_whole(raw.get(_DATASET_KEY)) else set()
    return versions, datasets


def parse(kind: str, raw: Any, facts: Facts) -> tuple[Any | None, Problems]:
    """The kind's parameters from a request's JSON object, or the problems with it by parameter name
    ('' for the object as a whole). Types, ranges, unknown names, and the checks against what the
    parameters name (`facts`). The self-test's parameters keep their own rules (kinds.params_problems)
    and come back as the plain object."""
    if kind == JobKind.SELFTEST or not isinstance(raw, Mapping):
        problems = kinds.params_problems(kind, raw)
        return (None if problems else dict(raw)), problems
    cls = _KIND_CLASSES.get(kind)
    if cls is None:
        return None, {"": f"No parameters are known for kind {kind}."}
    read = Reader(raw, cls, kind)
    parser = {
        JobKind.FINE_TUNE: _fine_tune,
        JobKind.EVALUATE: _evaluate,
        JobKind.BENCHMARK: _benchmark,
        JobKind.CONVERT: _convert,
    }[JobKind(kind)]
    parsed = parser(read, facts)
    return (None if read.problems else parsed), read.problems


def as_stored(params: Any) -> dict[str, Any]:
    """A parsed kind's parameters as the JSON the job row keeps: every field, defaults filled."""
    if isinstance(params, Mapping):
        return dict(params)
    return {f.name: _jsonable(getattr(params, f.name)) for f in fields(params)}


def from_stored(kind: str, stored: Mapping[str, Any]) -> Any:
    """The kind's parameters dataclass from a job row's `params` (as `as_stored` wrote them: already
    checked when the job was created, so only the shapes JSON lost are restored)."""
    cls = _KIND_CLASSES.get(kind)
    if cls is None:
        return dict(stored)
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {k: v for k, v in stored.items() if k in known}
    if "method" in values:
        values["method"] = Method(values["method"])
    if "golden" in values:
        values["golden"] = tuple((str(p), str(e)) for p, e in values["golden"])
    for name in ("batch_sizes", "prompt_lengths"):
        if name in values:
            values[name] = tuple(values[name])
    return cls(**values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _version(read: Reader, name: str, facts: Facts, version_id: int | None) -> VersionFacts | None:
    """The named version's facts, noting an unknown or unusable one."""
    if version_id is None:
        return None
    version = facts.versions.get(version_id)
    if version is None:
        read.note(name, f"No model version has id {version_id}.")
        return None
    if version.usable is not None:
        read.note(name, version.usable)
        return None
    return version


def _dataset(read: Reader, facts: Facts, dataset_id: int | None) -> DatasetFacts | None:
    """The named dataset's facts, noting an unknown or archived one, or one not (yet) valid."""
    if dataset_id is None:
        return None
    dataset = facts.datasets.get(dataset_id)
    if dataset is None:
        read.note(_DATASET_KEY, f"No dataset has id {dataset_id}.")
        return None
    if dataset.archived:
        read.note(_DATASET_KEY, f"Dataset {dataset.name} is archived; un-archive it to use it.")
    elif dataset.state == "pending":
        read.note(_DATASET_KEY, f"Dataset {dataset.name} is not validated yet; validate it first.")
    elif dataset.state != "valid":
        rows = "row" if dataset.errors == 1 else "rows"
        read.note(
            _DATASET_KEY,
            f"Dataset {dataset.name} failed validation ({dataset.errors} bad {rows}); fix the file "
            "and validate it again.",
        )
    elif dataset.rows < 1:
        read.note(_DATASET_KEY, f"Dataset {dataset.name} has no rows.")
    return dataset


def _generates(read: Reader, name: str, version: VersionFacts | None, what: str) -> None:
    """Note a version the kind cannot load as a causal LM (a Hugging Face folder, or an adapter)."""
    if version is None:
        return
    if version.kind == ADAPTER or (version.kind == CAUSAL_LM and version.format == HF_FOLDER):
        return
    read.note(
        name,
        f"{version.label} is a {version.kind or 'model of unknown kind'} in {version.format or 'an unknown'} "
        f"format; {what} takes a causal LM in a Hugging Face folder (or an adapter on one).",
    )


def _within_context(read: Reader, name: str, tokens: int, version: VersionFacts | None) -> None:
    if version is not None and version.context and tokens > version.context:
        read.note(name, f"{tokens:,} tokens is more than {version.label}'s context of {version.context:,}.")


def _seq_len(read: Reader, version: VersionFacts | None) -> int:
    """The sequence length asked for, checked against the model's context; left out, the default cut to
    that context, so a kind's defaults fit every model."""
    seq_len = read.whole("seq_len", low=2, high=SEQ_LEN_LIMIT)
    if not read.given("seq_len") and version is not None and version.context:
        return min(seq_len, version.context)
    _within_context(read, "seq_len", seq_len, version)
    return seq_len


def _fine_tune(read: Reader, facts: Facts) -> FineTuneParams:
    base = _version(read, "base_version", facts, read.id("base_version"))
    if base is not None and not (base.kind == CAUSAL_LM and base.format == HF_FOLDER):
        read.note(
            "base_version",
            f"{base.label} is a {base.kind or 'model of unknown kind'} in {base.format or 'an unknown'} "
            "format; fine-tuning takes a causal LM in a Hugging Face folder.",
        )
    dataset_id = read.id(_DATASET_KEY)
    _dataset(read, facts, dataset_id)
    method = Method(read.choice("method", tuple(m.value for m in Method)))
    epochs = read.number("epochs", low=0.0, high=EPOCHS_LIMIT)
    max_steps = read.whole("max_steps", low=0, high=MAX_STEPS_LIMIT)
    if epochs == 0 and max_steps == 0:
        read.note("max_steps", "Give max_steps or epochs above 0: the run would take no step.")
    seq_len = _seq_len(read, base)
    lora_rank = read.whole("lora_rank", low=1, high=SEQ_LEN_LIMIT)
    if method == Method.LORA and base is not None and base.hidden_size and lora_rank > base.hidden_size:
        read.note(
            "lora_rank",
            f"Rank {lora_rank} is above {base.label}'s width (hidden size {base.hidden_size}); "
            f"choose at most {base.hidden_size}.",
        )
    return FineTuneParams(
        base_version=base.id if base else 0,
        dataset=dataset_id or 0,
        method=method,
        learning_rate=read.number("learning_rate", low=0.0, high=1.0, low_open=True),
        epochs=epochs,
        max_steps=max_steps,
        batch_size=read.whole("batch_size", low=1, high=BATCH_LIMIT),
        grad_accum=read.whole("grad_accum", low=1, high=GRAD_ACCUM_LIMIT),
        seq_len=seq_len,
        eval_interval=read.whole("eval_interval", low=0, high=MAX_STEPS_LIMIT),
        checkpoint_interval=read.whole("checkpoint_interval", low=0, high=MAX_STEPS_LIMIT),
        seed=read.whole("seed", low=0, high=SEED_LIMIT),
        lora_rank=lora_rank,
        lora_alpha=read.whole("lora_alpha", low=1, high=SEQ_LEN_LIMIT),
        lora_dropout=read.number("lora_dropout", low=0.0, high=0.9),
        output_name=read.name("output_name"),
        memory_bytes=read.whole("memory_bytes", low=0, high=2**62),
    )


def _evaluate(read: Reader, facts: Facts) -> EvaluateParams:
    version = _version(read, "version", facts, read.id("version"))
    _generates(read, "version", version, "evaluation")
    dataset_id = read.id(_DATASET_KEY, required=False)
    _dataset(read, facts, dataset_id)
    golden = read.golden("golden")
    if dataset_id is None and not golden and not read.given("golden"):
        read.note(_DATASET_KEY, "Give a dataset, golden pairs, or both: there is nothing to evaluate.")
    seq_len = _seq_len(read, version)
    return EvaluateParams(
        version=version.id if version else 0,
        dataset=dataset_id,
        split=read.choice("split", SPLITS),
        golden=golden,
        max_new_tokens=read.whole("max_new_tokens", low=1, high=NEW_TOKENS_LIMIT),
        seq_len=seq_len,
        batch_size=read.whole("batch_size", low=1, high=BATCH_LIMIT),
        memory_bytes=read.whole("memory_bytes", low=0, high=2**62),
    )


def _benchmark(read: Reader, facts: Facts) -> BenchmarkParams:
    version = _version(read, "version", facts, read.id("version"))
    _generates(read, "version", version, "a benchmark")
    prompt_lengths = read.ints("prompt_lengths", low=1, high=SEQ_LEN_LIMIT)
    new_tokens = read.whole("new_tokens", low=1, high=NEW_TOKENS_LIMIT)
    if not read.given("prompt_lengths") and version is not None and version.context:
        # The defaults, cut to what the model's context leaves beside the new tokens.
        room = max(1, version.context - new_tokens)
        prompt_lengths = tuple(sorted({min(length, room) for length in prompt_lengths}))
    elif "prompt_lengths" not in read.problems and "new_tokens" not in read.problems:
        _within_context(read, "prompt_lengths", max(prompt_lengths) + new_tokens, version)
    return BenchmarkParams(
        version=version.id if version else 0,
        batch_sizes=read.ints("batch_sizes", low=1, high=BATCH_LIMIT),
        prompt_lengths=prompt_lengths,
        new_tokens=new_tokens,
        repeats=read.whole("repeats", low=1, high=REPEATS_LIMIT),
        memory_bytes=read.whole("memory_bytes", low=0, high=2**62),
    )


def _convert(read: Reader, facts: Facts) -> ConvertParams:
    version = _version(read, "version", facts, read.id("version"))
    if version is not None and not version.has_pickle:
        read.note("version", f"{version.label} holds no pickle checkpoint to convert.")
    return ConvertParams(version=version.id if version else 0, output_name=read.name("output_name"))
