"""Whether a config describes its weights: the parameter count it implies, per family, against the
weights' own count (apps.models.domain.params). Pure: no files, no database."""

from __future__ import annotations

from typing import Any

import pytest

from apps.models.domain import params
from apps.models.domain.headers import Layout

# The demo LM (apps/models/demo/lm.py): a GPT-2 of 2 layers, hidden 64, 128 positions, a vocabulary
# of 1,024 and tied embeddings, whose safetensors hold 173,824 parameters.
DEMO_GPT2 = {
    "model_type": "gpt2",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 2,
    "context_length": 128,
    "vocab_size": 1024,
}
DEMO_PARAMS = 173_824
DEMO_LAYOUT = Layout(blocks=2, output_head=False, buffers=0)
# The repro: the demo LM's config.json changed to these sizes, its weights left alone.
INFLATED = {**DEMO_GPT2, "num_hidden_layers": 96, "hidden_size": 16384, "num_attention_heads": 128}
INFLATED["context_length"] = 8192


def _llama(**sizes: Any) -> dict[str, Any]:
    return {"model_type": "llama", **sizes}


# Published totals of real checkpoints (their safetensors' sums), and whether they store a head.
PUBLISHED = [
    ("gpt2", {**DEMO_GPT2, "num_hidden_layers": 12, "hidden_size": 768, "context_length": 1024,
              "vocab_size": 50257}, False, 124_439_808),
    ("llama-3.1-8b", _llama(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                            num_key_value_heads=8, intermediate_size=14336, vocab_size=128256), True,
     8_030_261_248),
    ("mixtral-8x7b", {**_llama(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                               num_key_value_heads=8, intermediate_size=14336, vocab_size=32000),
                      "model_type": "mixtral", "num_local_experts": 8}, True, 46_702_792_704),
    ("qwen2.5-0.5b", {**_llama(num_hidden_layers=24, hidden_size=896, num_attention_heads=14,
                               num_key_value_heads=2, intermediate_size=4864, vocab_size=151936),
                      "model_type": "qwen2"}, False, 494_032_768),
    ("qwen3-0.6b", {**_llama(num_hidden_layers=28, hidden_size=1024, num_attention_heads=16,
                             num_key_value_heads=8, head_dim=128, intermediate_size=3072,
                             vocab_size=151936), "model_type": "qwen3"}, False, 596_049_920),
    ("gemma-2-2b", {**_llama(num_hidden_layers=26, hidden_size=2304, num_attention_heads=8,
                             num_key_value_heads=4, head_dim=256, intermediate_size=9216,
                             vocab_size=256000), "model_type": "gemma2"}, False, 2_614_341_888),
    ("phi-3-mini", {**_llama(num_hidden_layers=32, hidden_size=3072, num_attention_heads=32,
                             intermediate_size=8192, vocab_size=32064), "model_type": "phi3"}, True,
     3_821_079_552),
    ("pythia-160m", {"model_type": "gpt_neox", "num_hidden_layers": 12, "hidden_size": 768,
                     "intermediate_size": 3072, "vocab_size": 50304}, True, 162_322_944),
]  # fmt: skip


@pytest.mark.parametrize(
    ("arch", "head", "published"), [p[1:] for p in PUBLISHED], ids=[p[0] for p in PUBLISHED]
)
def test_the_implied_count_is_what_published_checkpoints_hold(
    arch: dict[str, Any], head: bool, published: int
) -> None:
    claim, why = params.implied(arch)

    assert claim is not None, why
    assert claim.body + (claim.head if head else 0) == published


def test_a_config_that_describes_its_weights_passes_giving_both_figures() -> None:
    check = params.config_check(
        DEMO_GPT2, source="config.json", weights_params=DEMO_PARAMS, layout=DEMO_LAYOUT
    )

    assert (check.check, check.status) == ("config_matches_weights", "pass")
    assert check.detail == (
        "config.json implies 173,824 parameters (gpt2: 2 layers, hidden 64);"
        " the weights hold 173,824 in 2 layers"
    )


def test_the_demo_lms_inflated_config_fails_giving_both_figures() -> None:
    check = params.config_check(
        INFLATED, source="config.json", weights_params=DEMO_PARAMS, layout=DEMO_LAYOUT
    )

    assert check.status == "fail"
    assert "config.json implies 309,409,120,256 parameters (gpt2: 96 layers, hidden 16,384)" in check.detail
    assert "the weights hold 173,824 in 2 layers" in check.detail


@pytest.mark.parametrize(
    ("arch", "weights", "why"),
    [
        ({"model_type": "bert", "num_hidden_layers": 12}, 1, "parameters are not derived for 'bert' models"),
        ({"num_hidden_layers": 12, "hidden_size": 768}, 1, "names no model_type"),
        (_llama(num_hidden_layers=2, hidden_size=64), 1, "lacks num_attention_heads, intermediate_size"),
        (DEMO_GPT2, None, "the weights' parameter count is unknown"),
    ],
    ids=["unknown-family", "no-model-type", "sizes-missing", "weights-uncounted"],
)
def test_what_cannot_be_compared_is_skipped_saying_why(
    arch: dict[str, Any], weights: int | None, why: str
) -> None:
    check = params.config_check(arch, source="config.json", weights_params=weights, layout=None)

    assert check.status == "skip"
    assert why in check.detail


def test_an_output_head_counts_when_the_weights_store_one() -> None:
    # The demo GGUF file stores GPT-2's head as output.weight beside the embedding: 65,536 more.
    stored = Layout(blocks=2, output_head=True, buffers=0)

    assert params.config_check(DEMO_GPT2, source="x", weights_params=239_360, layout=stored).status == "pass"
    assert (
        params.config_check(DEMO_GPT2, source="x", weights_params=239_360, layout=DEMO_LAYOUT).status
        == "fail"
    )


def test_without_the_names_a_stored_head_and_a_tied_one_are_both_allowed() -> None:
    for held in (DEMO_PARAMS, 239_360):
        check = params.config_check(DEMO_GPT2, source="x", weights_params=held, layout=None)

        assert check.status == "pass"
        assert "implies 173,824 or 239,360 parameters" in check.detail


def test_causal_masks_stored_as_tensors_are_not_counted_as_parameters() -> None:
    gpt2 = PUBLISHED[0][1]
    masks = 12 * 1024 * 1024  # h.N.attn.bias, [1, 1, 1024, 1024] per layer in the original checkpoint
    layout = Layout(blocks=12, output_head=False, buffers=masks)

    check = params.config_check(gpt2, source="x", weights_params=124_439_808 + masks, layout=layout)

    assert check.status == "pass"


def test_a_layer_count_other_than_the_configs_fails_even_when_the_total_agrees() -> None:
    layout = Layout(blocks=3, output_head=False, buffers=0)

    check = params.config_check(DEMO_GPT2, source="x", weights_params=DEMO_PARAMS, layout=layout)

    assert check.status == "fail"
    assert "in 3 layers" in check.detail


@pytest.mark.parametrize(
    ("off", "status"), [(0.09, "pass"), (-0.09, "pass"), (0.11, "fail"), (-0.11, "fail")]
)
def test_the_counts_may_differ_by_the_tolerance_and_no_more(off: float, status: str) -> None:
    held = round(DEMO_PARAMS * (1 + off))

    assert params.config_check(DEMO_GPT2, source="x", weights_params=held, layout=None).status == status


def test_quantised_safetensors_may_hold_fewer_elements_than_values() -> None:
    _, arch, _, published = PUBLISHED[1]
    gptq = published // 8 + published // 128  # 4-bit values eight to an int32, and their scales

    assert (
        params.config_check(arch, source="x", weights_params=gptq, layout=None, packed="gptq").status
        == "pass"
    )
    assert params.config_check(arch, source="x", weights_params=gptq, layout=None).status == "fail"
    assert (
        params.config_check(arch, source="x", weights_params=10**6, layout=None, packed="gptq").status
        == "fail"
    )


def test_the_layout_reads_blocks_an_output_head_and_buffers_from_names() -> None:
    layout = params.layout(
        [
            ("transformer.wte.weight", (1024, 64)),
            ("transformer.h.0.attn.bias", (1, 1, 128, 128)),  # GPT-2's causal mask: a buffer
            ("transformer.h.0.attn.c_attn.bias", (192,)),  # a parameter
            ("transformer.h.1.attn.masked_bias", ()),
            ("transformer.h.1.mlp.c_fc.weight", (64, 256)),
            ("lm_head.weight", (1024, 64)),
        ]
    )

    assert layout == Layout(blocks=2, output_head=True, buffers=128 * 128 + 1)


def test_gguf_names_give_their_blocks_and_head_too() -> None:
    names = [
        ("token_embd.weight", (256, 64)),
        ("blk.0.attn_q.weight", (64, 64)),
        ("blk.7.ffn_up.weight", (1,)),
    ]

    assert params.layout([*names, ("output.weight", (256, 64))]) == Layout(8, True, 0)
    assert params.layout(names) == Layout(8, False, 0)


def test_the_shards_layouts_add_up_and_one_unknown_makes_the_whole_unknown() -> None:
    first, second = Layout(16, False, 10), Layout(32, True, 5)

    assert params.combine([first, second]) == Layout(32, True, 15)
    assert params.combine([first, None]) is None
