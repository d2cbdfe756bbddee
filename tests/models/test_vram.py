"""The VRAM estimate: weights + overhead + a KV cache sized from the architecture."""

from __future__ import annotations

from typing import Any

import pytest

from apps.models.domain.vram import attention_shape, estimate

MiB = 1024**2
GiB = 1024**3

# Meta-Llama-3-8B's config.json, the keys that matter here.
LLAMA_3_8B = {
    "architectures": ["LlamaForCausalLM"],
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "torch_dtype": "bfloat16",
}
SETTINGS: dict[str, Any] = {"context": 4096, "batch": 1, "overhead_share": 0.1, "overhead_min": 512 * MiB}


def test_llama_3_8b_at_4k_context_matches_the_sum_worked_by_hand() -> None:
    # 8,030,261,248 parameters in bf16; KV: 2 × 32 layers × 1 × 4096 tokens × 8 KV heads × 128 × 2 bytes.
    weights = 8_030_261_248 * 2

    got = estimate(weights_bytes=weights, arch=LLAMA_3_8B, **SETTINGS)

    assert got["weights"] == 16_060_522_496
    assert got["overhead"] == 1_606_052_250
    assert got["kv_cache"] == 512 * MiB
    assert got["total"] == 16_060_522_496 + 1_606_052_250 + 536_870_912
    assert (got["context"], got["batch"]) == (4096, 1)
    assert "8 KV heads × 128 head dim" in got["basis"]


@pytest.mark.parametrize(
    ("arch", "kv_cache"),
    [
        # Multi-head attention: kv_heads defaults to the query heads (GPT-2 small names).
        ({"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024}, 2 * 12 * 1024 * 768 * 2),
        # Grouped-query attention: 8 KV heads of 32 make a quarter of the multi-head cache.
        ({**LLAMA_3_8B, "num_key_value_heads": 32}, 2 * GiB),
        (LLAMA_3_8B, 512 * MiB),
        # Multi-query attention: one KV head.
        ({**LLAMA_3_8B, "num_key_value_heads": 1}, 64 * MiB),
        # An explicit head_dim wins over hidden / heads (Gemma: 3072 / 16 = 192, but 256 per head).
        (
            {"num_hidden_layers": 28, "hidden_size": 3072, "num_attention_heads": 16, "head_dim": 256},
            2 * 28 * 4096 * 16 * 256 * 2,
        ),
        # GGUF metadata carries the architecture as a key prefix.
        (
            {
                "general.architecture": "llama",
                "llama.block_count": 32,
                "llama.embedding_length": 4096,
                "llama.attention.head_count": 32,
                "llama.attention.head_count_kv": 8,
                "llama.context_length": 8192,
            },
            512 * MiB,
        ),
        # Multimodal configs keep the language model in text_config.
        ({"model_type": "llava", "text_config": LLAMA_3_8B}, 512 * MiB),
    ],
)
def test_kv_cache_follows_layers_kv_heads_and_head_dim(arch: dict[str, Any], kv_cache: int) -> None:
    assert estimate(weights_bytes=0, arch=arch, **SETTINGS)["kv_cache"] == kv_cache


@pytest.mark.parametrize(("context", "batch"), [(1, 1), (4096, 1), (4096, 8), (2048, 3)])
def test_kv_cache_grows_linearly_with_context_and_batch(context: int, batch: int) -> None:
    got = estimate(
        weights_bytes=0, arch=LLAMA_3_8B, context=context, batch=batch, overhead_share=0, overhead_min=0
    )

    assert got["kv_cache"] == 2 * 32 * batch * context * 8 * 128 * 2
    assert got["total"] == got["kv_cache"]


def test_context_is_capped_at_what_the_model_can_attend_to() -> None:
    tiny = {"n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128}

    got = estimate(weights_bytes=0, arch=tiny, **SETTINGS)

    assert got["context"] == 128
    assert got["kv_cache"] == 2 * 2 * 128 * 64 * 2


def test_kv_bytes_per_value_scales_the_cache_for_an_8_bit_cache() -> None:
    got = estimate(weights_bytes=0, arch=LLAMA_3_8B, kv_bytes_per_value=1, **SETTINGS)

    assert got["kv_cache"] == 256 * MiB


@pytest.mark.parametrize(
    ("weights", "overhead"),
    [(0, 512 * MiB), (1 * GiB, 512 * MiB), (5 * GiB + 1, 512 * MiB), (10 * GiB, 1 * GiB)],
)
def test_overhead_is_a_share_of_the_weights_but_never_below_the_floor(weights: int, overhead: int) -> None:
    got = estimate(weights_bytes=weights, arch=None, **SETTINGS)

    assert got["overhead"] == overhead
    assert got["total"] == weights + overhead


@pytest.mark.parametrize(
    ("arch", "why"),
    [
        (None, "architecture unknown"),
        ({}, "architecture unknown"),
        ({"model_type": "bert"}, "lacks layers, heads, hidden size"),
        ({"num_hidden_layers": 4, "hidden_size": 256}, "lacks heads"),
        ({**LLAMA_3_8B, "num_hidden_layers": "32"}, "implausible layers '32'"),
        ({**LLAMA_3_8B, "num_hidden_layers": True}, "implausible layers True"),
        ({**LLAMA_3_8B, "num_hidden_layers": 0}, "implausible layers 0"),
        ({**LLAMA_3_8B, "num_attention_heads": 2**40}, "implausible heads"),
        ({**LLAMA_3_8B, "num_key_value_heads": 64}, "kv_heads 64 > heads 32"),
        ({**LLAMA_3_8B, "hidden_size": 4097}, "4097 is not a multiple of 32 heads"),
        ({**LLAMA_3_8B, "num_hidden_layers": "x" * 1_000_000}, "implausible layers 'xxx"),
    ],
)
def test_an_unusable_architecture_counts_no_kv_cache_and_says_why(arch: Any, why: str) -> None:
    got = estimate(weights_bytes=GiB, arch=arch, **SETTINGS)

    assert got["kv_cache"] == 0
    assert got["total"] == GiB + 512 * MiB
    assert got["basis"].startswith("no KV cache counted: ")
    assert why in got["basis"]
    assert len(got["basis"]) < 200


def test_an_architecture_that_does_not_describe_the_weights_is_not_used_at_all() -> None:
    # The repro: a config claiming 96 layers beside 700 KB of weights added GiBs of KV cache.
    arch = {**LLAMA_3_8B, "max_position_embeddings": 128}

    got = estimate(weights_bytes=695_296, arch=arch, untrusted="config_matches_weights failed", **SETTINGS)

    assert (got["weights"], got["kv_cache"], got["total"]) == (695_296, 0, 695_296 + 512 * MiB)
    assert got["basis"] == "no KV cache counted: config_matches_weights failed"
    assert got["context"] == SETTINGS["context"]  # nor is the context capped at what it claims


def test_the_largest_plausible_architecture_still_fits_a_64_bit_column() -> None:
    huge = {"num_hidden_layers": 4096, "num_attention_heads": 65536, "head_dim": 65536}

    got = estimate(weights_bytes=2**50, arch=huge, **SETTINGS)

    assert got["total"] < 2**63


@pytest.mark.parametrize(
    "bad",
    [{"weights_bytes": -1}, {"context": 0}, {"batch": 0}, {"overhead_share": -0.1}, {"overhead_min": -1}],
)
def test_settings_out_of_range_are_a_programming_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        estimate(**{"weights_bytes": 0, "arch": None, **SETTINGS, **bad})


def test_attention_shape_reports_what_the_estimate_multiplies() -> None:
    shape, problem = attention_shape(LLAMA_3_8B)

    assert problem == ""
    assert shape is not None
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.max_context) == (32, 8, 128, 8192)
