"""Whether a model's config describes its weights: the sizes it states against what the weights'
tensor headers hold.

The VRAM estimate multiplies the config's layers, heads and context, so a config.json copied
beside other weights (or edited) can make a 700 KB model look like 300 billion parameters, or a
large one look small. Two comparisons, in `config_check`:

- For the families whose layers are known (`_FAMILIES`), the config's sizes are turned into the
  parameter count they imply and compared with the weights' count, within TOLERANCE. A size
  config.json leaves out is what transformers would use (its documented default, named in the
  detail); GGUF metadata has no defaults, so a size it lacks fails the check.
- For every family, the tensors themselves (`layout`): the config's layer count must not exceed
  the numbered blocks, its hidden size must be a token embedding's width, and its layers ×
  hidden² must not exceed SHARED_BOUND × the values the weights hold (see there).

A contradiction fails the version's `config_matches_weights` check. What the estimate may then
use (`Comparison.trusted`): every size the count stood for when a family's count agreed; the
layer count and hidden size alone (the KV cache no wider than the hidden size) when only the
tensors confirmed those; nothing at all on a fail, or on a skip that confirmed neither
(apps.models.domain.vram, `untrusted`).

Quantised safetensors store several values per element of an integer matrix; how many they may
hold is read from the weights' own dtypes (`layout`), never from the config's claim to be
quantised, which is as easy to edit as its sizes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.models.domain.headers import Check, Layout

CHECK = "config_matches_weights"
# Real checkpoints differ from the formulas by a little: biases a variant adds, a padded vocabulary,
# a small extra tensor. A config that lies about the size is off by factors, not by 10%.
TOLERANCE = 0.10
# Integer dtypes quantised safetensors pack values into (GPTQ and AWQ: eight 4-bit values in an
# int32; bitsandbytes: two in a uint8), by bits. 2 bits a value is the least any released scheme
# uses (ternary BitNet included), so an element of b bits holds at most b / 2 values.
_PACKING_BITS = {"I8": 8, "U8": 8, "I16": 16, "U16": 16, "I32": 32, "U32": 32}
PACKED_MAX = max(_PACKING_BITS.values()) // 2
# Every transformer block stores its attention's query and output projections, hidden × (heads ×
# head_dim) each, with heads × head_dim at least 0.89 × hidden in released models (Gemma 2 2B is
# the lowest), so about 1.8 × hidden²; its MLP or a Mamba mixer adds at least 2 × hidden² more.
# Only weight sharing goes below: ALBERT applies one stored layer to all 24 of ALBERT-xlarge's,
# whose 60M parameters are 0.6 × 24 × 2048². So no released model holds fewer than
# layers × hidden² / SHARED_BOUND values, with room to spare over ALBERT's 1 / 0.6.
SHARED_BOUND = 4

_BLOCK = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks|block|blk)\.(\d{1,9})\.")
_HEADS = frozenset({"lm_head.weight", "output.weight", "embed_out.weight"})
# The token embedding under the names transformers' families (GPT-2, Llama and kin, GPT-NeoX,
# BERT, T5, CLIP, Mamba) and GGUF give it.
_EMBEDDINGS = (
    "wte.weight",
    "embed_tokens.weight",
    "embed_in.weight",
    "word_embeddings.weight",
    "tok_embeddings.weight",
    "token_embedding.weight",
    "token_embd.weight",
    "shared.weight",
    "embeddings.weight",
)
_WIDTHS_KEPT = 4
# GPT-2 and GPT-NeoX checkpoints carry a 4-D causal mask per layer under these names; the masked
# bias and rotary frequencies are buffers too. None of them is a parameter.
_MASKS = (".attn.bias", ".attention.bias")
_BUFFERS = ("masked_bias", "rotary_emb.inv_freq")

# The sizes, under config.json's names (validation.ARCH_KEYS), and how a detail names each.
_LABELS = {
    "num_hidden_layers": "layer count",
    "hidden_size": "hidden size",
    "num_attention_heads": "head count",
    "num_key_value_heads": "KV head count",
    "head_dim": "head size",
    "intermediate_size": "MLP width",
    "vocab_size": "vocabulary size",
    "context_length": "context length",
    "num_local_experts": "expert count",
}


@dataclass(frozen=True, slots=True)
class Implied:
    """The parameter count a config implies: `body` always, `head` when an untied output head is stored."""

    family: str
    layers: int
    hidden: int
    body: int
    head: int
    # The sizes config.json left out, as transformers' defaults fill them ("context length 1,024").
    defaulted: tuple[str, ...]
    # The sizes the count stands for, under the names apps.models.domain.vram reads.
    shape: dict[str, int]


@dataclass(frozen=True, slots=True)
class Comparison:
    """The check's line, and the sizes the VRAM estimate may take from the config (None: none)."""

    check: Check
    trusted: dict[str, int] | None


@dataclass(frozen=True, slots=True)
class _Sizes:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    positions: int
    experts: int
    arch: Mapping[str, Any]

    def flag(self, key: str) -> bool:
        return self.arch.get(key) is True


@dataclass(frozen=True, slots=True)
class _Family:
    count: Callable[[_Sizes], tuple[int, int]]
    needs: tuple[str, ...]
    # transformers' defaults for what config.json leaves out (its configuration_<family>.py);
    # a size absent here is derived: KV heads = heads, head size = hidden / heads.
    defaults: Mapping[str, int]
    # Whether its attention has KV heads and a head size of its own (GPT-2's and NeoX's have not).
    grouped: bool = True


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the tensors say of a config's layer count and hidden size: each clause names a
    contradiction ("" for none); `unconfirmed` says why a size could not be confirmed."""

    layers: str
    width: str
    bound: str
    unconfirmed: tuple[str, ...]


def layout(tensors: Iterable[tuple[str, str, Sequence[int]]], *, packing: bool = True) -> Layout:
    """What the (name, dtype, shape) triples of one file's tensors say: numbered blocks, an output
    head, buffers, the token embedding's width and, where `packing` (safetensors, not GGUF, whose
    shapes count values), how many values its integer matrices may hold beyond their elements."""
    blocks, head, buffers, packed = 0, False, 0, 0
    widths: set[int] = set()
    for name, dtype, shape in tensors:
        if found := _BLOCK.search(name):
            blocks = max(blocks, int(found[1]) + 1)
        if name in _HEADS or name.endswith(".lm_head.weight"):
            head = True
        if (name.endswith(_MASKS) and len(shape) == 4) or name.endswith(_BUFFERS):
            buffers += math.prod(shape)
        bits = _PACKING_BITS.get(dtype)
        if bits is None and len(shape) == 2 and _named_embedding(name) and len(widths) < _WIDTHS_KEPT:
            widths.add(shape[-1])
        if packing and bits is not None and len(shape) >= 2:
            packed += math.prod(shape) * (bits // 2 - 1)
    return Layout(
        blocks=blocks, output_head=head, buffers=buffers, widths=tuple(sorted(widths)), packed=packed
    )


def combine(layouts: Sequence[Layout | None]) -> Layout | None:
    """One layout for a set of shards; None when any shard's is unknown."""
    if not layouts or any(part is None for part in layouts):
        return None
    known = [part for part in layouts if part is not None]
    packed = [part.packed for part in known]
    return Layout(
        blocks=max(part.blocks for part in known),
        output_head=any(part.output_head for part in known),
        buffers=sum(part.buffers for part in known),
        widths=tuple(sorted({width for part in known for width in part.widths}))[:_WIDTHS_KEPT],
        packed=None if None in packed else sum(p or 0 for p in packed),
    )


def most_values(elements: int, layout: Layout | None, dtypes: Iterable[str]) -> int:
    """The most values `elements` stored elements of safetensors can hold: what the layout
    recorded, or, for a header stored before it did, PACKED_MAX each if any tensor is integer-typed."""
    if layout is not None and layout.packed is not None:
        return elements + layout.packed
    return elements * PACKED_MAX if any(dtype in _PACKING_BITS for dtype in dtypes) else elements


def implied(arch: Mapping[str, Any], *, defaults: bool = True) -> tuple[Implied | None, str]:
    """The count `arch` (config.json's names, see validation.ARCH_KEYS) implies, or None and why not.

    With `defaults` (a config.json), a size left out is transformers' default for the family.
    """
    name = family_name(arch)
    family = _FAMILIES.get(name)
    if family is None:
        return None, _unfamiliar(name)
    sizes, defaulted, problem = _sizes(arch, family, name, defaults=defaults)
    if sizes is None:
        return None, problem
    body, head = family.count(sizes)
    shape = {"num_hidden_layers": sizes.layers, "hidden_size": sizes.hidden}
    if sizes.heads:  # GPT-2's and NeoX's counts do without it; their KV cache does not
        shape["num_attention_heads"] = sizes.heads
    if family.grouped:
        shape |= {"num_key_value_heads": sizes.kv_heads, "head_dim": sizes.head_dim}
    if sizes.positions:
        shape["context_length"] = sizes.positions
    return Implied(name, sizes.layers, sizes.hidden, body, head, defaulted, shape), ""


def family_name(arch: Mapping[str, Any]) -> str:
    """The model_type as the family table spells it ("GPT2 " and "gpt-neox" are gpt2 and gpt_neox)."""
    model_type = arch.get("model_type")
    if not isinstance(model_type, str):
        return ""
    return model_type.strip().lower().replace("-", "_")[:40]


def config_check(
    arch: Mapping[str, Any],
    *,
    source: str,
    weights_params: int | None,
    layout: Layout | None,
    values: int | None = None,
    defaults: bool = True,
) -> Comparison:
    """Whether `arch` (from `source`: "config.json", "the GGUF metadata") describes the weights.

    `values` is the most values the weights' elements can hold (`most_values`; their count when
    nothing is packed). Where the layout is unknown, an output head may or may not be stored:
    both counts are allowed. `defaults`: whether a size the source leaves out has a default.
    """
    if weights_params is None:
        detail = "not compared: the weights' parameter count is unknown (their headers do not give it)"
        return Comparison(Check(CHECK, "skip", detail), None)
    buffers = layout.buffers if layout is not None else 0
    held = weights_params - buffers
    most = (weights_params if values is None else values) - buffers
    seen = _seen(arch, layout, most)
    if family_name(arch) not in _FAMILIES:
        return _by_tensors(arch, source, seen)
    claim, why = implied(arch, defaults=defaults)
    if claim is None:
        detail = f"{source} {why}: it cannot be compared with the weights"
        return Comparison(Check(CHECK, "fail", detail), None)
    expected = (
        [claim.body, claim.body + claim.head]
        if layout is None
        else [claim.body + (claim.head if layout.output_head else 0)]
    )
    blocks = layout.blocks if layout is not None else 0
    agrees = any(held <= n * (1 + TOLERANCE) and most >= n * (1 - TOLERANCE) for n in expected)
    agrees = agrees and not (blocks and blocks != claim.layers)
    said = " or ".join(f"{count:,}" for count in expected)
    shape = f"{claim.family}: {_layers(claim.layers)}, hidden {claim.hidden:,}"
    if claim.defaulted:
        shape += f"; not given, so transformers' defaults: {', '.join(claim.defaulted)}"
    held_text = f"{held:,}"
    if most > held:
        held_text += f" elements (up to {most:,} values packed in integer tensors)"
    held_text += f" in {_layers(blocks)}" if blocks else ""
    clauses = [] if agrees else [f"implies {said} parameters ({shape}) but the weights hold {held_text}"]
    clauses += [seen.width] if seen.width else []
    if clauses:
        return _failed(source, clauses)
    detail = f"{source} implies {said} parameters ({shape}); the weights hold {held_text}"
    return Comparison(Check(CHECK, "pass", detail), claim.shape)


def _by_tensors(arch: Mapping[str, Any], source: str, seen: _Seen) -> Comparison:
    """A config whose family's count is not known: judged by what its tensors show alone."""
    name = family_name(arch)
    if clauses := [clause for clause in (seen.layers, seen.width, seen.bound) if clause]:
        return _failed(source, clauses)
    if seen.unconfirmed:
        why = (
            f"{_unfamiliar(name)}, and the weights cannot confirm {source}'s sizes"
            if name
            else f"{source} names no model_type, and the weights cannot confirm its sizes"
        )
        detail = f"not compared: {why}: {'; '.join(seen.unconfirmed)}"
        return Comparison(Check(CHECK, "skip", detail), None)
    layers, hidden = _positive(arch, "num_hidden_layers") or 0, _positive(arch, "hidden_size") or 0
    why = _unfamiliar(name) if name else "it names no model_type, so no parameter count is compared"
    detail = f"{source} gives {_layers(layers)} and hidden size {hidden:,}, as the tensors have them; {why}"
    # No head_dim: the weights confirm the hidden size, so the KV cache is counted no wider.
    keys = (
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "context_length",
    )
    trusted = {key: value for key in keys if (value := _positive(arch, key)) is not None}
    return Comparison(Check(CHECK, "pass", detail), trusted)


def _seen(arch: Mapping[str, Any], layout: Layout | None, values: int) -> _Seen:
    layers, hidden = _positive(arch, "num_hidden_layers"), _positive(arch, "hidden_size")
    unconfirmed: list[str] = []
    layers_clause = width_clause = bound_clause = ""
    if layout is None:
        unconfirmed.append("the tensors' names were not all read")
    if layers is None:
        unconfirmed.append("it gives no layer count")
    elif layout is not None and not layout.blocks:
        unconfirmed.append("the tensor names number no layers")
    elif layout is not None and layers > layout.blocks:
        layers_clause = f"gives {_layers(layers)} but the tensor names number {layout.blocks:,}"
    if hidden is None:
        unconfirmed.append("it gives no hidden size")
    elif layout is not None and not layout.widths:
        unconfirmed.append("no token embedding tensor is named")
    elif layout is not None and not {hidden, _positive(arch, "embedding_size")} & set(layout.widths):
        wide = " or ".join(f"{width:,}" for width in layout.widths)
        width_clause = f"gives hidden size {hidden:,} but the token embedding is {wide} wide"
    if layers is not None and hidden is not None and layers * hidden * hidden > SHARED_BOUND * values:
        least = layers * hidden * hidden // SHARED_BOUND
        bound_clause = (
            f"gives {_layers(layers)} of hidden size {hidden:,}, which no model stores in fewer than "
            f"{least:,} parameters (the weights hold {values:,})"
        )
    return _Seen(layers_clause, width_clause, bound_clause, tuple(unconfirmed))


def _failed(source: str, clauses: Sequence[str]) -> Comparison:
    detail = (
        f"{source} {'; it '.join(clauses)}: it does not describe these weights, "
        "so the VRAM estimate uses none of its sizes"
    )
    return Comparison(Check(CHECK, "fail", detail), None)


def _unfamiliar(name: str) -> str:
    """Why a config's family has no count: it names none, or one not in the table."""
    if not name:
        return "names no model_type"
    return f"parameters are not derived for {name!r} models (only for {', '.join(sorted(_FAMILIES))})"


def _named_embedding(name: str) -> bool:
    return any(name == suffix or name.endswith("." + suffix) for suffix in _EMBEDDINGS)


def _layers(count: int) -> str:
    return f"{count:,} layer" + ("" if count == 1 else "s")


def _positive(arch: Mapping[str, Any], key: str) -> int | None:
    value = arch.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _sizes(
    arch: Mapping[str, Any], family: _Family, name: str, *, defaults: bool
) -> tuple[_Sizes | None, tuple[str, ...], str]:
    """The family's sizes from `arch`, what defaults filled, or None and the problem."""
    values: dict[str, int] = {}
    defaulted: list[str] = []
    missing: list[str] = []
    for key, label in _LABELS.items():
        value = arch.get(key)
        if value is not None and _positive(arch, key) is None:
            shown = str(value)[:40]
            return None, (), f"gives {label} {shown!r} for its {name} model, not a positive whole number"
        if value is None and defaults and key in family.defaults:
            value = family.defaults[key]
            defaulted.append(f"{label} {value:,}")
        if value is None and key in family.needs:
            missing.append(label)
        values[key] = value or 0
    if missing:
        labels = ", ".join(missing[:-1]) + " or " + missing[-1] if len(missing) > 1 else missing[0]
        return None, (), f"gives no {labels} for its {name} model, and no default applies"
    heads, hidden = values["num_attention_heads"], values["hidden_size"]
    sizes = _Sizes(
        layers=values["num_hidden_layers"],
        hidden=hidden,
        heads=heads,
        kv_heads=values["num_key_value_heads"] or heads,
        head_dim=values["head_dim"] or (hidden // heads if heads else 0),
        ffn=values["intermediate_size"] or 4 * hidden,
        vocab=values["vocab_size"],
        positions=values["context_length"],
        experts=values["num_local_experts"],
        arch=arch,
    )
    return sizes, tuple(defaulted), ""


def _gpt2(s: _Sizes) -> tuple[int, int]:
    """GPT-2: learned positions, fused QKV (Conv1D), biases everywhere, LayerNorms with a bias."""
    h, i = s.hidden, s.ffn
    block = 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + 2 * h + (h * i + i) + (i * h + h)
    return s.vocab * h + s.positions * h + s.layers * block + 2 * h, s.vocab * h


def _gpt_neox(s: _Sizes) -> tuple[int, int]:
    """GPT-NeoX (Pythia): fused QKV with biases, two LayerNorms per block, rotary positions."""
    h, i = s.hidden, s.ffn
    block = 4 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h)
    return s.vocab * h + s.layers * block + 2 * h, s.vocab * h


def _llama_style(
    *, qkv_bias: bool = False, qk_norm: bool = False, norms: int = 2
) -> Callable[[_Sizes], tuple[int, int]]:
    """Llama and its kin (Mistral, Mixtral, Qwen, Gemma, Phi-3): grouped-query attention, a gated
    MLP (or `experts` of them and a router), RMSNorms without bias, rotary positions."""

    def count(s: _Sizes) -> tuple[int, int]:
        h, q, kv, i = s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim, s.ffn
        attention = h * q + 2 * h * kv + q * h
        if qkv_bias or s.flag("attention_bias"):
            attention += q + 2 * kv
        if s.flag("attention_bias"):
            attention += h
        if qk_norm:
            attention += 2 * s.head_dim
        mlp = 3 * h * i + (2 * i + h if s.flag("mlp_bias") else 0)
        if s.experts:
            mlp = s.experts * mlp + s.experts * h
        block = attention + mlp + norms * h
        return s.vocab * h + s.layers * block + h, s.vocab * h

    return count


def _defaults(layers: int, hidden: int, heads: int, vocab: int, context: int, **more: int) -> dict[str, int]:
    sizes = {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "vocab_size": vocab,
        "context_length": context,
    }
    return sizes | more


# The sizes each count needs; GPT-2's MLP is 4 × hidden unless n_inner says otherwise.
_GPT2_NEEDS = ("num_hidden_layers", "hidden_size", "vocab_size", "context_length")
_NEOX_NEEDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size")
_NEEDS = (*_NEOX_NEEDS, "num_attention_heads")
_LLAMA = _llama_style()
# model_type (config.json) or general.architecture (GGUF) -> its count, the sizes it needs, and
# transformers' defaults for what a config.json leaves out (transformers 5: LlamaConfig() and so on).
_FAMILIES: dict[str, _Family] = {
    "gpt2": _Family(_gpt2, _GPT2_NEEDS, _defaults(12, 768, 12, 50257, 1024), grouped=False),
    "gpt_neox": _Family(
        _gpt_neox, _NEOX_NEEDS, _defaults(44, 6144, 64, 50432, 2048, intermediate_size=24576), grouped=False
    ),
    "llama": _Family(_LLAMA, _NEEDS, _defaults(32, 4096, 32, 32000, 2048, intermediate_size=11008)),
    "mistral": _Family(
        _LLAMA,
        _NEEDS,
        _defaults(32, 4096, 32, 32000, 131072, intermediate_size=14336, num_key_value_heads=8),
    ),
    "mixtral": _Family(
        _LLAMA,
        _NEEDS,
        _defaults(
            32, 4096, 32, 32000, 131072, intermediate_size=14336, num_key_value_heads=8, num_local_experts=8
        ),
    ),
    "phi3": _Family(_LLAMA, _NEEDS, _defaults(32, 3072, 32, 32064, 4096, intermediate_size=8192)),
    "gemma": _Family(
        _LLAMA,
        _NEEDS,
        _defaults(28, 3072, 16, 256000, 8192, intermediate_size=24576, num_key_value_heads=16, head_dim=256),
    ),
    "gemma2": _Family(
        _llama_style(norms=4),
        _NEEDS,
        _defaults(26, 2304, 8, 256000, 8192, intermediate_size=9216, num_key_value_heads=4, head_dim=256),
    ),
    "qwen2": _Family(
        _llama_style(qkv_bias=True),
        _NEEDS,
        _defaults(32, 4096, 32, 151936, 32768, intermediate_size=22016, num_key_value_heads=32),
    ),
    "qwen3": _Family(
        _llama_style(qk_norm=True),
        _NEEDS,
        _defaults(32, 4096, 32, 151936, 32768, intermediate_size=22016, num_key_value_heads=32, head_dim=128),
    ),
}
# GGUF names GPT-NeoX's architecture without the underscore.
_FAMILIES["gptneox"] = _FAMILIES["gpt_neox"]
