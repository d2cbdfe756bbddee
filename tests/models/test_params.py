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
DEMO_LAYOUT = Layout(blocks=2, output_head=False, buffers=0, widths=(64,), packed=0)
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


def _check(arch: dict[str, Any], held: int | None, layout: Layout | None, **kwargs: Any) -> params.Comparison:
    return params.config_check(arch, source="config.json", weights_params=held, layout=layout, **kwargs)


def test_a_config_that_describes_its_weights_passes_giving_both_figures() -> None:
    compared = _check(DEMO_GPT2, DEMO_PARAMS, DEMO_LAYOUT)

    assert (compared.check.check, compared.check.status) == ("config_matches_weights", "pass")
    assert compared.check.detail == (
        "config.json implies 173,824 parameters (gpt2: 2 layers, hidden 64);"
        " the weights hold 173,824 in 2 layers"
    )


def test_the_sizes_a_family_count_agreed_with_are_what_the_estimate_may_use() -> None:
    gpt2 = _check(DEMO_GPT2, DEMO_PARAMS, DEMO_LAYOUT).trusted
    claim, _ = params.implied(PUBLISHED[1][1])

    # GPT-2 has no KV heads or head size of its own, whatever a config adds: none is taken from it.
    assert gpt2 == {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 2,
        "context_length": 128,
    }
    assert claim is not None
    assert claim.shape == {
        "num_hidden_layers": 32,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "context_length": 2048,  # LlamaConfig's default: the config names none
    }


def test_the_demo_lms_inflated_config_fails_giving_both_figures() -> None:
    compared = _check(INFLATED, DEMO_PARAMS, DEMO_LAYOUT)

    assert (compared.check.status, compared.trusted) == ("fail", None)
    detail = compared.check.detail
    assert "config.json implies 309,409,120,256 parameters (gpt2: 96 layers, hidden 16,384)" in detail
    assert "the weights hold 173,824 in 2 layers" in detail
    assert "gives hidden size 16,384 but the token embedding is 64 wide" in detail


def _without(arch: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in arch.items() if k != key}


# The ways around a family's count that outside testing found: each used to give a skip, and the
# estimate then still believed the config's 96 layers of 16,384.
DODGES = {
    "unknown-family": {**INFLATED, "model_type": "opt"},
    "no-model-type": _without(INFLATED, "model_type"),
    "model-type-spelt-otherwise": {**INFLATED, "model_type": "GPT2 "},
    "context-deleted": _without(INFLATED, "context_length"),
}


@pytest.mark.parametrize("arch", DODGES.values(), ids=DODGES.keys())
def test_an_inflated_config_fails_however_its_family_is_hidden(arch: dict[str, Any]) -> None:
    compared = _check(arch, DEMO_PARAMS, DEMO_LAYOUT)

    assert (compared.check.status, compared.trusted) == ("fail", None)
    assert compared.check.detail.endswith(
        ": it does not describe these weights, so the VRAM estimate uses none of its sizes"
    )


def test_a_config_without_a_family_count_is_judged_by_its_tensors() -> None:
    compared = _check({**INFLATED, "model_type": "opt"}, DEMO_PARAMS, DEMO_LAYOUT)

    assert compared.check.detail == (
        "config.json gives 96 layers but the tensor names number 2;"
        " it gives hidden size 16,384 but the token embedding is 64 wide;"
        " it gives 96 layers of hidden size 16,384, which no model stores in fewer than"
        " 6,442,450,944 parameters (the weights hold 173,824)"
        ": it does not describe these weights, so the VRAM estimate uses none of its sizes"
    )


def test_tensors_that_confirm_the_layers_and_width_pass_and_vouch_for_only_those() -> None:
    arch = {**DEMO_GPT2, "model_type": "opt", "num_key_value_heads": 2, "head_dim": 4096}

    compared = _check(arch, DEMO_PARAMS, DEMO_LAYOUT)

    assert compared.check.status == "pass"
    assert compared.check.detail.startswith(
        "config.json gives 2 layers and hidden size 64, as the tensors have them;"
        " parameters are not derived for 'opt' models (only for gemma, "
    )
    # No head_dim: the KV cache is counted no wider than the confirmed hidden size.
    assert compared.trusted == {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "context_length": 128,
    }


def test_more_numbered_blocks_than_layers_are_allowed_without_a_family_count() -> None:
    # A vision tower numbered past the language model's layers, or DeepSeek's extra MTP layer.
    more = Layout(blocks=27, output_head=False, buffers=0, widths=(64,), packed=0)

    assert _check({**DEMO_GPT2, "model_type": "paligemma"}, DEMO_PARAMS, more).check.status == "pass"


def test_a_token_embedding_narrower_than_the_hidden_size_passes_where_the_config_says_so() -> None:
    # ALBERT: 128-wide embeddings projected to the hidden size.
    albert = {"model_type": "albert", "num_hidden_layers": 2, "hidden_size": 64, "embedding_size": 16}
    narrow = Layout(blocks=2, output_head=False, buffers=0, widths=(16,), packed=0)

    assert _check(albert, DEMO_PARAMS, narrow).check.status == "pass"
    assert _check(_without(albert, "embedding_size"), DEMO_PARAMS, narrow).check.status == "fail"


def test_layers_times_hidden_squared_may_not_exceed_four_times_what_the_weights_hold() -> None:
    # Hostile weights: 96 numbered scraps and a one-token embedding 16,384 wide, 1.7M values.
    scraps = Layout(blocks=96, output_head=False, buffers=0, widths=(16384,), packed=0)
    arch = {"model_type": "opt", "num_hidden_layers": 96, "hidden_size": 16384}
    least = 96 * 16384**2 // 4

    assert _check(arch, least, scraps).check.status == "pass"
    failed = _check(arch, least - 1, scraps).check
    assert failed.status == "fail"
    assert f"which no model stores in fewer than {least:,} parameters" in failed.detail


@pytest.mark.parametrize(
    ("arch", "layout", "why"),
    [
        (
            {"model_type": "bert", "num_hidden_layers": 12},
            None,
            "parameters are not derived for 'bert' models",
        ),
        ({"num_hidden_layers": 2, "hidden_size": 64}, None, "config.json names no model_type, and the"),
        (
            {"num_hidden_layers": 2, "hidden_size": 64},
            Layout(blocks=0, output_head=False, buffers=0, widths=(), packed=0),
            "cannot confirm its sizes: the tensor names number no layers; no token embedding tensor is named",
        ),
    ],
    ids=["unknown-family-unread-names", "no-model-type-unread-names", "nothing-named"],
)
def test_what_the_tensors_cannot_confirm_is_skipped_and_vouches_for_nothing(
    arch: dict[str, Any], layout: Layout | None, why: str
) -> None:
    compared = _check(arch, DEMO_PARAMS, layout)

    assert (compared.check.status, compared.trusted) == ("skip", None)
    assert compared.check.detail.startswith("not compared: ")
    assert why in compared.check.detail


def test_weights_without_a_count_are_skipped_saying_why() -> None:
    compared = _check(DEMO_GPT2, None, None)

    assert (compared.check.status, compared.trusted) == ("skip", None)
    assert compared.check.detail == (
        "not compared: the weights' parameter count is unknown (their headers do not give it)"
    )


def test_a_size_config_json_leaves_out_is_transformers_default_and_named() -> None:
    gpt2 = PUBLISHED[0][1]

    compared = _check(_without(gpt2, "context_length"), 124_439_808, None)

    assert compared.check.status == "pass"
    assert "(gpt2: 12 layers, hidden 768; not given, so transformers' defaults: context length 1,024)" in (
        compared.check.detail
    )
    # The demo's 128 positions are not GPT-2's default 1,024: without them its count disagrees.
    assert _check(_without(DEMO_GPT2, "context_length"), DEMO_PARAMS, DEMO_LAYOUT).check.status == "fail"


def test_a_llama_config_without_its_mlp_width_is_counted_with_the_default_one() -> None:
    _, arch, _, published = PUBLISHED[1]

    assert _check(arch, published, None).check.status == "pass"
    assert _check(_without(arch, "intermediate_size"), published, None).check.status == "fail"


def test_gguf_metadata_lacking_a_size_its_family_needs_fails_saying_which() -> None:
    _, arch, _, published = PUBLISHED[1]

    compared = params.config_check(
        _without(arch, "intermediate_size"),
        source="the GGUF metadata",
        weights_params=published,
        layout=None,
        defaults=False,
    )

    assert (compared.check.status, compared.check.detail) == (
        "fail",
        "the GGUF metadata gives no MLP width for its llama model, and no default applies:"
        " it cannot be compared with the weights",
    )


def test_a_size_that_is_not_a_positive_whole_number_fails_saying_so() -> None:
    compared = _check({**DEMO_GPT2, "num_hidden_layers": "96"}, DEMO_PARAMS, DEMO_LAYOUT)

    assert (compared.check.status, compared.check.detail) == (
        "fail",
        "config.json gives layer count '96' for its gpt2 model, not a positive whole number:"
        " it cannot be compared with the weights",
    )


def test_an_output_head_counts_when_the_weights_store_one() -> None:
    # The demo GGUF file stores GPT-2's head as output.weight beside the embedding: 65,536 more.
    stored = Layout(blocks=2, output_head=True, buffers=0)

    assert _check(DEMO_GPT2, 239_360, stored).check.status == "pass"
    assert _check(DEMO_GPT2, 239_360, DEMO_LAYOUT).check.status == "fail"


def test_without_the_names_a_stored_head_and_a_tied_one_are_both_allowed() -> None:
    for held in (DEMO_PARAMS, 239_360):
        check = _check(DEMO_GPT2, held, None).check

        assert check.status == "pass"
        assert "implies 173,824 or 239,360 parameters" in check.detail


def test_causal_masks_stored_as_tensors_are_not_counted_as_parameters() -> None:
    gpt2 = PUBLISHED[0][1]
    masks = 12 * 1024 * 1024  # h.N.attn.bias, [1, 1, 1024, 1024] per layer in the original checkpoint
    layout = Layout(blocks=12, output_head=False, buffers=masks)

    assert _check(gpt2, 124_439_808 + masks, layout).check.status == "pass"


def test_a_layer_count_other_than_the_configs_fails_even_when_the_total_agrees() -> None:
    layout = Layout(blocks=3, output_head=False, buffers=0)

    check = _check(DEMO_GPT2, DEMO_PARAMS, layout).check

    assert check.status == "fail"
    assert "in 3 layers" in check.detail


@pytest.mark.parametrize(
    ("off", "status"), [(0.09, "pass"), (-0.09, "pass"), (0.11, "fail"), (-0.11, "fail")]
)
def test_the_counts_may_differ_by_the_tolerance_and_no_more(off: float, status: str) -> None:
    held = round(DEMO_PARAMS * (1 + off))

    assert _check(DEMO_GPT2, held, None).check.status == status


def test_quantised_weights_may_hold_as_many_values_as_their_integer_tensors_pack() -> None:
    _, arch, _, published = PUBLISHED[1]
    gptq = published // 8 + published // 128  # 4-bit values eight to an int32, and their scales
    packed = Layout(blocks=32, output_head=True, buffers=0, widths=(4096,), packed=published - gptq)
    unpacked = Layout(blocks=32, output_head=True, buffers=0, widths=(4096,), packed=0)

    assert _check(arch, gptq, packed, values=published).check.status == "pass"
    assert (
        "up to 8,030,261,248 values packed in integer tensors"
        in _check(arch, gptq, packed, values=published).check.detail
    )
    assert _check(arch, gptq, unpacked, values=gptq).check.status == "fail"


def test_the_most_values_come_from_the_integer_tensors_not_from_any_claim() -> None:
    packed = params.layout(
        [("model.layers.0.q.qweight", "I32", (8, 64)), ("model.layers.0.q.scales", "F16", (1, 64))]
    )
    old = Layout(blocks=1, output_head=False, buffers=0)  # stored before packing was recorded

    assert packed.packed == 8 * 64 * 15  # an int32 holds up to 16 two-bit values
    assert params.most_values(576, packed, ["I32", "F16"]) == 576 + 8 * 64 * 15
    assert params.most_values(576, old, ["I32", "F16"]) == 576 * 16
    assert params.most_values(576, old, ["F16"]) == 576


def test_the_layout_reads_blocks_an_output_head_buffers_and_the_embeddings_width_from_names() -> None:
    layout = params.layout(
        [
            ("transformer.wte.weight", "F32", (1024, 64)),
            ("transformer.h.0.attn.bias", "F32", (1, 1, 128, 128)),  # GPT-2's causal mask: a buffer
            ("transformer.h.0.attn.c_attn.bias", "F32", (192,)),  # a parameter
            ("transformer.h.1.attn.masked_bias", "F32", ()),
            ("transformer.h.1.mlp.c_fc.weight", "F32", (64, 256)),
            ("lm_head.weight", "F32", (1024, 64)),
        ]
    )

    assert layout == Layout(blocks=2, output_head=True, buffers=128 * 128 + 1, widths=(64,), packed=0)


def test_t5_numbers_its_blocks_not_the_layers_inside_them() -> None:
    names = [("encoder.block.5.layer.1.DenseReluDense.wi.weight", "F32", (2048, 512))]

    assert params.layout(names).blocks == 6


def test_gguf_names_give_their_blocks_head_and_width_too_and_nothing_packed() -> None:
    names = [
        ("token_embd.weight", "F16", (256, 64)),
        ("blk.0.attn_q.weight", "I32", (64, 64)),
        ("blk.7.ffn_up.weight", "Q4_K", (1,)),
    ]

    assert params.layout([*names, ("output.weight", "F16", (256, 64))], packing=False) == Layout(
        8, True, 0, (64,), 0
    )
    assert params.layout(names, packing=False) == Layout(8, False, 0, (64,), 0)


def test_the_shards_layouts_add_up_and_one_unknown_makes_the_whole_unknown() -> None:
    first, second = Layout(16, False, 10, (), 7), Layout(32, True, 5, (4096,), 3)

    assert params.combine([first, second]) == Layout(32, True, 15, (4096,), 10)
    assert params.combine([first, Layout(32, True, 5)]) == Layout(32, True, 15, (), None)
    assert params.combine([first, None]) is None


@pytest.mark.parametrize(
    ("arch", "details"),
    [
        ({"model_type": "bert", "num_hidden_layers": 12}, "not compared: parameters are not derived for"),
        (
            {"num_hidden_layers": 12},
            "not compared: config.json names no model_type, and the weights cannot"
            " confirm its sizes: the tensors' names were not all read; it gives no hidden size",
        ),
    ],
)
def test_skip_details_are_sentences(arch: dict[str, Any], details: str) -> None:
    detail = _check(arch, DEMO_PARAMS, None).check.detail

    assert detail.startswith(details)
    assert " it lacks" not in detail
    assert "config.json it" not in detail


def test_a_config_without_a_model_type_that_its_tensors_confirm_says_so_in_a_sentence() -> None:
    detail = _check(_without(DEMO_GPT2, "model_type"), DEMO_PARAMS, DEMO_LAYOUT).check.detail

    assert detail == (
        "config.json gives 2 layers and hidden size 64, as the tensors have them;"
        " it names no model_type, so no parameter count is compared"
    )
