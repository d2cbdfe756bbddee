"""How much device memory a job needs: what it reserves in serving's ledger before it is dispatched,
and (on a simulated GPU, which has no allocator to run out) what its step would take.

A training step holds the weights, the gradients and AdamW's two moments of what it trains, and the
activations its batch keeps for the backward pass; an evaluation or benchmark holds the weights and
one forward pass's activations. The activation rule is the usual transformer figure (about 16 values
per token, per layer, per unit of width, kept for the backward pass) plus the logits over the
vocabulary (and their gradient when training); the overhead share covers the allocator's slack and
the runtime. It is an estimate: an out-of-memory run halves its batch and tries again (the runner),
and an operator may reserve more (`memory_bytes`; an admin may reserve less).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

ADAM_BYTES_PER_PARAM = 8  # two fp32 moments
ACTIVATION_VALUES = 16  # per token, per layer, per unit of width, kept for the backward pass
OVERHEAD_SHARE = 0.1
OVERHEAD_MIN_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Shape:
    """What the estimate needs to know about a model."""

    params: int  # all parameters
    hidden: int
    layers: int
    vocab: int
    dtype_bytes: int = 4  # float32 on CPU and simulated GPUs; 2 for half precision


def _with_overhead(total: int) -> int:
    return total + max(OVERHEAD_MIN_BYTES, int(total * OVERHEAD_SHARE))


def activation_bytes(shape: Shape, *, batch: int, seq_len: int, training: bool) -> int:
    """What one step's activations take: kept for the backward pass when training."""
    tokens = batch * seq_len
    per_layer = ACTIVATION_VALUES if training else 2  # inference keeps a layer's output, not every layer's
    layers = shape.layers if training else 1
    hidden = tokens * shape.hidden * layers * per_layer * shape.dtype_bytes
    logits = tokens * shape.vocab * shape.dtype_bytes * (2 if training else 1)
    return hidden + logits


def training_bytes(shape: Shape, *, trainable: int, batch: int, seq_len: int) -> int:
    """A training step's peak: weights, gradients and optimiser state of `trainable` parameters,
    and the batch's activations, with the overhead."""
    weights = shape.params * shape.dtype_bytes
    grads = trainable * shape.dtype_bytes
    optimiser = trainable * ADAM_BYTES_PER_PARAM
    return _with_overhead(
        weights + grads + optimiser + activation_bytes(shape, batch=batch, seq_len=seq_len, training=True)
    )


def inference_bytes(shape: Shape, *, batch: int, seq_len: int) -> int:
    """An evaluation's or benchmark's peak: the weights and one forward pass, with the overhead."""
    weights = shape.params * shape.dtype_bytes
    return _with_overhead(weights + activation_bytes(shape, batch=batch, seq_len=seq_len, training=False))


def lora_trainable(shape: Shape, *, rank: int, targets_per_layer: int = 2) -> int:
    """Parameters LoRA trains: two rank-r factors per adapted (width x width) projection."""
    return shape.layers * targets_per_layer * 2 * rank * shape.hidden


def fine_tune_bytes(base: Shape, *, method: str, lora_rank: int, batch: int, seq_len: int) -> int:
    """A fine-tune step's peak on the base model `base`: what the dispatcher reserves and what the
    runner's simulated check holds a step to, so that both sides agree to the byte at any batch.

    A LoRA run holds the base's weights plus the adapter's, and trains only the adapter; a full run
    trains every weight. `method` is domain.params.Method's value ("full" or "lora")."""
    if method == "lora":
        adapter = lora_trainable(base, rank=lora_rank)
        with_adapter = replace(base, params=base.params + adapter)
        return training_bytes(with_adapter, trainable=adapter, batch=batch, seq_len=seq_len)
    return training_bytes(base, trainable=base.params, batch=batch, seq_len=seq_len)


def benchmark_bytes(
    base: Shape, *, batch_sizes: Sequence[int], prompt_lengths: Sequence[int], new_tokens: int
) -> int:
    """A benchmark's peak: its largest batch over its longest prompt and the tokens it generates."""
    return inference_bytes(base, batch=max(batch_sizes), seq_len=max(prompt_lengths) + new_tokens)
