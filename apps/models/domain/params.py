"""Whether a model's config describes its weights: the parameter count the config implies, per
architecture family, against the count the weights' tensor headers hold.

The VRAM estimate multiplies the config's layers, heads and context, so a config.json copied
beside other weights (or edited) can make a 700 KB model look like 300 billion parameters, or a
large one look small. The config's sizes are turned into the parameter count they imply, the
way each family builds its layers, and compared with the weights; a disagreement past
TOLERANCE fails the version's `config_matches_weights` check, and the estimate then uses
nothing the config says (apps.models.domain.vram, `untrusted`).

The tensor names help where they follow the usual schemes (`layout`): whether an output head is
stored apart from the embedding (tied embeddings store none), which tensors are buffers rather
than parameters (GPT-2's causal mask), and how many blocks are numbered. Families whose layers
cannot be counted from config fields are skipped, saying so: a skip is not a problem.
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
# Quantised safetensors pack up to 16 values into one stored element (2-bit values in an int32),
# and add scales: their element count lies between the implied count / 16 and the implied count.
PACKED_MAX = 16

_BLOCK = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks|blk)\.(\d{1,9})\.")
_HEADS = frozenset({"lm_head.weight", "output.weight", "embed_out.weight"})
# GPT-2 and GPT-NeoX checkpoints carry a 4-D causal mask per layer under these names; the masked
# bias and rotary frequencies are buffers too. None of them is a parameter.
_MASKS = (".attn.bias", ".attention.bias")
_BUFFERS = ("masked_bias", "rotary_emb.inv_freq")


@dataclass(frozen=True, slots=True)
class Implied:
    """The parameter count a config implies: `body` always, `head` when an untied output head is stored."""

    family: str
    layers: int
    hidden: int
    body: int
    head: int


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


def layout(tensors: Iterable[tuple[str, Sequence[int]]]) -> Layout:
    """What the (name, shape) pairs of one file's tensors say: numbered blocks, an output head, buffers."""
    blocks, head, buffers = 0, False, 0
    for name, shape in tensors:
        if found := _BLOCK.search(name):
            blocks = max(blocks, int(found[1]) + 1)
        if name in _HEADS or name.endswith(".lm_head.weight"):
            head = True
        if (name.endswith(_MASKS) and len(shape) == 4) or name.endswith(_BUFFERS):
            buffers += math.prod(shape)
    return Layout(blocks=blocks, output_head=head, buffers=buffers)


def combine(layouts: Sequence[Layout | None]) -> Layout | None:
    """One layout for a set of shards; None when any shard's is unknown."""
    if not layouts or any(part is None for part in layouts):
        return None
    known = [part for part in layouts if part is not None]
    return Layout(
        blocks=max(part.blocks for part in known),
        output_head=any(part.output_head for part in known),
        buffers=sum(part.buffers for part in known),
    )


def implied(arch: Mapping[str, Any]) -> tuple[Implied | None, str]:
    """The count `arch` (config.json's names, see validation.ARCH_KEYS) implies, or None and why not."""
    model_type = arch.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        return None, "it names no model_type, so no family's layers can be counted"
    family = _FAMILIES.get(model_type.lower())
    if family is None:
        known = ", ".join(sorted(_FAMILIES))
        return None, f"parameters are not derived for {model_type[:40]!r} models (only {known})"
    required, count = family
    sizes, missing = _sizes(arch, required)
    if sizes is None:
        return None, f"it lacks {', '.join(missing)}"
    body, head = count(sizes)
    return Implied(model_type.lower(), sizes.layers, sizes.hidden, body, head), ""


def config_check(
    arch: Mapping[str, Any],
    *,
    source: str,
    weights_params: int | None,
    layout: Layout | None,
    packed: str = "",
) -> Check:
    """Whether `arch` (from `source`: "config.json", "the GGUF metadata") implies the weights' count.

    `packed` names a quantisation whose stored elements each hold several values ("gptq").
    Where the layout is unknown, an output head may or may not be stored: both counts are allowed.
    """
    claim, why = implied(arch)
    if claim is None:
        return Check(CHECK, "skip", f"not compared: {source} {why}")
    if weights_params is None:
        return Check(
            CHECK, "skip", "not compared: the weights' parameter count is unknown (not read from them)"
        )
    held = weights_params - (layout.buffers if layout is not None else 0)
    if layout is None:
        expected = [claim.body, claim.body + claim.head]
    else:
        expected = [claim.body + (claim.head if layout.output_head else 0)]
    agrees = any(_close(held, count, packed=bool(packed)) for count in expected)
    blocks = layout.blocks if layout is not None else 0
    if blocks and blocks != claim.layers:
        agrees = False
    said = " or ".join(f"{count:,}" for count in expected)
    shape = f"{claim.family}: {_layers(claim.layers)}, hidden {claim.hidden:,}"
    held_text = f"{held:,}" + (f" in {_layers(blocks)}" if blocks else "")
    quantised = f" (quantised, {packed[:20]}: up to {PACKED_MAX} values per element)" if packed else ""
    if agrees:
        return Check(
            CHECK,
            "pass",
            f"{source} implies {said} parameters ({shape}); the weights hold {held_text}{quantised}",
        )
    return Check(
        CHECK,
        "fail",
        f"{source} implies {said} parameters ({shape}) but the weights hold {held_text}{quantised}: "
        "it does not describe these weights, so the VRAM estimate uses none of its sizes",
    )


def _layers(count: int) -> str:
    return f"{count:,} layer" + ("" if count == 1 else "s")


def _close(held: int, expected: int, *, packed: bool) -> bool:
    low = expected / PACKED_MAX if packed else expected
    return low * (1 - TOLERANCE) <= held <= expected * (1 + TOLERANCE)


def _positive(arch: Mapping[str, Any], key: str) -> int | None:
    value = arch.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _sizes(arch: Mapping[str, Any], required: tuple[str, ...]) -> tuple[_Sizes | None, list[str]]:
    missing = [key for key in required if _positive(arch, key) is None]
    if missing:
        return None, missing
    layers = _positive(arch, "num_hidden_layers") or 0
    hidden = _positive(arch, "hidden_size") or 0
    heads = _positive(arch, "num_attention_heads") or 1
    head_dim = _positive(arch, "head_dim") or hidden // heads
    return (
        _Sizes(
            layers=layers,
            hidden=hidden,
            heads=heads,
            kv_heads=_positive(arch, "num_key_value_heads") or heads,
            head_dim=head_dim,
            ffn=_positive(arch, "intermediate_size") or 4 * hidden,
            vocab=_positive(arch, "vocab_size") or 0,
            positions=_positive(arch, "context_length") or 0,
            experts=_positive(arch, "num_local_experts") or 0,
            arch=arch,
        ),
        [],
    )


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


_GPT2_NEEDS = ("num_hidden_layers", "hidden_size", "vocab_size", "context_length")
_NEOX_NEEDS = ("num_hidden_layers", "hidden_size", "vocab_size")
_LLAMA_NEEDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")
# model_type (config.json) or general.architecture (GGUF) -> the sizes it needs, and its count.
_FAMILIES: dict[str, tuple[tuple[str, ...], Callable[[_Sizes], tuple[int, int]]]] = {
    "gpt2": (_GPT2_NEEDS, _gpt2),
    "gpt_neox": (_NEOX_NEEDS, _gpt_neox),
    "gptneox": (_NEOX_NEEDS, _gpt_neox),
    "llama": (_LLAMA_NEEDS, _llama_style()),
    "mistral": (_LLAMA_NEEDS, _llama_style()),
    "mixtral": (_LLAMA_NEEDS, _llama_style()),
    "phi3": (_LLAMA_NEEDS, _llama_style()),
    "gemma": (_LLAMA_NEEDS, _llama_style()),
    "gemma2": (_LLAMA_NEEDS, _llama_style(norms=4)),
    "qwen2": (_LLAMA_NEEDS, _llama_style(qkv_bias=True)),
    "qwen3": (_LLAMA_NEEDS, _llama_style(qk_norm=True)),
}
