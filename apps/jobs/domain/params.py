"""Each kind's parameters: their names, types and defaults, and the rules a job's parameters must
meet before it is queued (a 400 naming the field, never a job that fails a minute later).

Pure Python. The job services gather the facts the rules need (the base version's width and
context, the dataset's state) into `Facts`; the runners read the parsed dataclasses, so the names
here are the only names there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
