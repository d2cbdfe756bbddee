"""How much GPU memory a model version needs: weights + runtime overhead + KV cache.

Pure: the scan passes the weights' bytes (from the file headers) and the architecture (a
config.json or GGUF metadata), the settings pass the context, batch and overhead. The KV cache is
what a transformer keeps per token it attends to: for every layer a key and a value vector per
KV head, so 2 × layers × batch × context × kv_heads × head_dim × bytes per value. Grouped-query
attention (fewer KV heads than query heads) shrinks it, which is why kv_heads is honoured.

The architecture comes from files nobody vetted, so every number is checked before it is
multiplied: a missing or implausible one gives a KV cache of 0 and a `basis` saying why, never an
exception or an estimate too large to store. The caller passes only what the weights vouch for
(apps.models.domain.params, `Comparison.trusted`): all the sizes a family's parameter count
agreed with; the layer count and hidden size alone where only the tensors confirmed those (no
head_dim then, so the KV cache is at most hidden wide per layer); and nothing where the config
contradicts its weights, or where nothing of it could be confirmed. Then it passes `untrusted`,
and the estimate is the weights' bytes and the overhead, with no KV cache and a basis saying
why. A contradicted version is invalid, so it is never loaded on that estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Names the same quantity goes by in config.json (Llama, GPT-2, T5, Falcon, ...) and in GGUF
# metadata, where keys carry the architecture as a prefix ("llama.attention.head_count").
_ALIASES: dict[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "block_count"),
    "hidden": ("hidden_size", "n_embd", "d_model", "embedding_length"),
    "heads": ("num_attention_heads", "n_head", "attention.head_count"),
    "kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "attention.head_count_kv"),
    "head_dim": ("head_dim", "attention.key_length"),
    "max_context": ("max_position_embeddings", "n_positions", "n_ctx", "context_length", "seq_length"),
}

# Above these a value is not a real model's but a typo or a hostile file's; they also keep the
# estimate inside a 64-bit column (2 × 4096 × 65536 × 65536 × 2 bytes per token is 2^46).
_LIMITS = {
    "layers": 4096,
    "hidden": 1 << 20,
    "heads": 65536,
    "kv_heads": 65536,
    "head_dim": 65536,
    "max_context": 1 << 30,
}


@dataclass(frozen=True, slots=True)
class Shape:
    """The attention shape the KV cache depends on."""

    layers: int
    kv_heads: int
    head_dim: int
    max_context: int | None


def estimate(
    *,
    weights_bytes: int,
    arch: Mapping[str, Any] | None,
    context: int,
    batch: int,
    overhead_share: float,
    overhead_min: int,
    kv_bytes_per_value: int = 2,
    untrusted: str = "",
) -> dict[str, Any]:
    """The estimate's parts in bytes, with the context and batch used and a `basis` line saying how.

    The context is capped at the model's own maximum when the architecture states one: a model
    never holds more positions than it can attend to. `untrusted` says why `arch` must not be
    used at all (then no KV cache is counted).
    """
    if weights_bytes < 0 or context < 1 or batch < 1 or overhead_share < 0 or overhead_min < 0:
        raise ValueError("weights_bytes and overhead must be >= 0, context and batch >= 1")
    overhead = max(overhead_min, round(weights_bytes * overhead_share))
    shape, problem = (None, untrusted) if untrusted else attention_shape(arch)
    if shape is None:
        kv_cache, basis = 0, f"no KV cache counted: {problem}"
    else:
        if shape.max_context is not None and shape.max_context < context:
            context = shape.max_context
        kv_cache = 2 * shape.layers * batch * context * shape.kv_heads * shape.head_dim * kv_bytes_per_value
        basis = (
            f"KV cache = 2 × {shape.layers} layers × batch {batch} × {context} tokens"
            f" × {shape.kv_heads} KV heads × {shape.head_dim} head dim × {kv_bytes_per_value} bytes"
        )
    return {
        "weights": weights_bytes,
        "overhead": overhead,
        "kv_cache": kv_cache,
        "total": weights_bytes + overhead + kv_cache,
        "context": context,
        "batch": batch,
        "basis": basis,
    }


def attention_shape(arch: Mapping[str, Any] | None) -> tuple[Shape | None, str]:
    """The layers, KV heads and head size `arch` describes, or None and the reason it does not."""
    if not arch:
        return None, "architecture unknown"
    values: dict[str, int | None] = {}
    for name, aliases in _ALIASES.items():
        found = _lookup(arch, aliases)
        if found is None:
            values[name] = None
        elif isinstance(found, bool) or not isinstance(found, int) or not 1 <= found <= _LIMITS[name]:
            return None, f"implausible {name} {repr(found)[:40]}"
        else:
            values[name] = found
    layers, hidden, heads, head_dim = values["layers"], values["hidden"], values["heads"], values["head_dim"]
    if layers is None or heads is None or (head_dim is None and hidden is None):
        lacking = [n for n, v in (("layers", layers), ("heads", heads)) if v is None]
        if head_dim is None and hidden is None:
            lacking.append("hidden size")
        return None, f"architecture lacks {', '.join(lacking)}"
    kv_heads = values["kv_heads"] or heads
    if kv_heads > heads:
        return None, f"implausible kv_heads {kv_heads} > heads {heads}"
    if head_dim is None:
        # Checked above: without head_dim, hidden is known.
        if hidden is None or hidden % heads:
            return None, f"hidden size {hidden} is not a multiple of {heads} heads"
        head_dim = hidden // heads
    return Shape(layers, kv_heads, head_dim, values["max_context"]), ""


def _lookup(arch: Mapping[str, Any], aliases: tuple[str, ...]) -> Any:
    """The first alias present, as a plain key or as a GGUF key's suffix after the architecture."""
    for alias in aliases:
        if alias in arch:
            return arch[alias]
    suffixes = tuple("." + alias for alias in aliases)
    for key, value in arch.items():
        if isinstance(key, str) and key.endswith(suffixes):
            return value
    # Multimodal configs (Llava, Gemma 3) keep the language model's numbers in text_config.
    text = arch.get("text_config")
    if isinstance(text, Mapping):
        return _lookup(text, aliases)
    return None
