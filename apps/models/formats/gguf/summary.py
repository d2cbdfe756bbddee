"""What a GGUF header's metadata says about the model: the summary the pages show.

Only the keys named here are kept while the metadata is walked (reader.py); every other
value is skipped past unread.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from apps.models.formats.gguf.tables import FILE_TYPES
from apps.models.formats.gguf.values import SHOWN_STRING, ArrayValue

KEPT_GENERAL = frozenset(
    {
        "general.architecture",
        "general.name",
        "general.size_label",
        "general.file_type",
        "general.alignment",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "split.count",
        "split.no",
    }
)
# llama.cpp's gguf-split names a set's files <prefix>-00001-of-00003.gguf, numbered from 1.
_SPLIT_NAME = re.compile(r"(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf", re.IGNORECASE)
# Per-architecture keys, found as "<architecture>.<suffix>"; the metadata name each gets.
_ARCH_KEYS = {
    "context_length": "context_length",
    "block_count": "block_count",
    "embedding_length": "embedding_length",
    "feed_forward_length": "feed_forward_length",
    "attention.head_count": "head_count",
    "attention.head_count_kv": "head_count_kv",
    "attention.key_length": "key_length",
    "attention.value_length": "value_length",
    "vocab_size": "vocab_size",
    "expert_count": "expert_count",
    "expert_used_count": "expert_used_count",
}
KEPT_SUFFIXES = tuple("." + suffix for suffix in _ARCH_KEYS)
CHAT_TEMPLATE = "tokenizer.chat_template"


def summarise(
    values: dict[str, Any],
    architecture: str | None,
    *,
    version: int,
    kv_count: int,
    dtypes: Counter[str],
    alignment: int,
    chat_templates: dict[str, int],
) -> dict[str, Any]:
    """The header's metadata for the pages; empty when not even the version was read."""
    if not version:
        return {}
    summary: dict[str, Any] = {"gguf_version": version, "kv_count": kv_count}
    if architecture is not None:
        summary["architecture"] = architecture[:SHOWN_STRING]
    named = (
        ("general.name", "name"),
        ("general.size_label", "size_label"),
        ("tokenizer.ggml.model", "tokenizer_model"),
    )
    for key, name in named:
        if isinstance(values.get(key), str):
            summary[name] = values[key][:SHOWN_STRING]
    if architecture is not None:
        for suffix, name in _ARCH_KEYS.items():
            number = _as_int(values.get(f"{architecture}.{suffix}"))
            if number is not None:
                summary[name] = number
    tokens = values.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayValue) and "vocab_size" not in summary:
        summary["vocab_size"] = tokens.length
    split_count = _as_int(values.get("split.count"))
    if split_count is not None:
        summary["split_count"] = split_count
    file_type = _as_int(values.get("general.file_type"))
    if file_type is not None:
        summary["file_type"] = file_type
        summary["quantization"] = FILE_TYPES.get(file_type, f"unknown ({file_type})")
    summary["tensor_types"] = dict(dtypes)
    summary["alignment"] = alignment
    if CHAT_TEMPLATE in chat_templates:
        summary["chat_template_bytes"] = chat_templates[CHAT_TEMPLATE]
    return summary


def split_siblings(name: str, values: dict[str, Any]) -> tuple[str, ...]:
    """The first file of a split set names the rest, so validation can require them all."""
    count, number = _as_int(values.get("split.count")), _as_int(values.get("split.no"))
    named = _SPLIT_NAME.fullmatch(name)
    if number != 0 or named is None or count is None or count != int(named["count"]):
        return ()
    prefix = named["prefix"]
    return tuple(f"{prefix}-{no:05d}-of-{count:05d}.gguf" for no in range(2, count + 1))


def _as_int(value: Any) -> int | None:
    """A metadata number; per-layer arrays (some models vary head counts by layer) give their largest."""
    if isinstance(value, ArrayValue) and value.head and len(value.head) == value.length:
        value = max(value.head) if all(isinstance(v, int) for v in value.head) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
