"""Hugging Face folders: config.json, tokenizer files, adapters, and bounded JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from apps.models.domain.headers import Check
from apps.models.formats import hf
from apps.models.formats.base import FormatError
from tests.models.formats import corpus


def _statuses(checks: tuple[Check, ...]) -> dict[str, str]:
    return {check.check: check.status for check in checks}


def _read(folder: Path) -> tuple[dict[str, Any], tuple[Check, ...], str]:
    return hf.read_folder(folder, sorted(p.name for p in folder.iterdir()))


def test_load_json_returns_an_object(tmp_path: Path) -> None:
    assert hf.load_json(corpus.write_json(tmp_path, "config.json", {"a": 1})) == {"a": 1}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{", "not valid JSON"),
        ("[1, 2]", "holds a JSON list, not an object"),
        ('{"a": 1, "a": 2}', "key 'a' given twice"),
        ("[" * 200_000, "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_load_json_refuses_what_is_not_one_plain_object(
    tmp_path: Path, content: str | bytes, words: str
) -> None:
    path = corpus.write(tmp_path, "config.json", content)

    with pytest.raises(FormatError, match=words) as raised:
        hf.load_json(path)
    assert raised.value.check == "json_object"


def test_load_json_refuses_a_file_over_its_limit_before_parsing(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="larger than 10,485,760 bytes") as raised:
        hf.load_json(corpus.oversized_json(tmp_path))
    assert raised.value.check == "json_size"


def test_a_causal_lm_folder_gives_its_architecture(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path)

    metadata, _, kind = _read(tmp_path)

    assert kind == "causal-lm"
    assert metadata["architectures"] == ["LlamaForCausalLM"]
    assert metadata["model_type"] == "llama"
    assert {k: metadata[k] for k in ("num_hidden_layers", "hidden_size", "num_attention_heads")} == {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
    }
    assert metadata["num_key_value_heads"] == 2
    assert metadata["context_length"] == 2048
    assert metadata["vocab_size"] == 1000
    assert metadata["torch_dtype"] == "bfloat16"
    assert metadata["tokenizer_files"] == ["tokenizer.json"]
    assert metadata["generation"] == {"max_length": 2048, "eos_token_id": 2, "do_sample": True}


def test_a_complete_causal_lm_folder_passes_its_checks(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path)

    _, checks, _ = _read(tmp_path)

    assert _statuses(checks) == {
        "config_json": "pass",
        "config_required_keys": "pass",
        "tokenizer_present": "pass",
        "tokenizer_config_json": "pass",
        "chat_template": "pass",
        "generation_config_json": "pass",
    }


def test_a_hostile_chat_template_fails_its_check_with_the_reason_and_is_never_rendered(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "MARKER"
    template = corpus.HOSTILE_TEMPLATE.replace("MARKER", str(marker))
    corpus.write_hf_folder(tmp_path, chat_template=template)

    metadata, checks, _ = _read(tmp_path)

    assert metadata["chat_template"] == {"present": True, "length": len(template)}
    (check,) = [c for c in checks if c.check == "chat_template"]
    assert check.status == "fail"
    assert "'__globals__', a Python internal" in check.detail
    assert not marker.exists()


def test_a_hostile_chat_template_in_its_own_file_fails_its_check(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path, chat_template=None)
    corpus.write(tmp_path, hf.TEMPLATE_FILE, "{{ self._TemplateReference__context }}")

    metadata, checks, _ = _read(tmp_path)

    assert metadata["chat_template"]["present"] is True
    (check,) = [c for c in checks if c.check == "chat_template"]
    assert (check.status, "_TemplateReference__context" in check.detail) == ("fail", True)


def test_a_hostile_template_file_fails_its_check_beside_a_harmless_config_one(tmp_path: Path) -> None:
    # transformers loads chat_template.jinja in preference to tokenizer_config.json's template
    corpus.write_hf_folder(tmp_path)
    corpus.write(tmp_path, hf.TEMPLATE_FILE, "{{ ''.__class__ }}")

    metadata, checks, _ = _read(tmp_path)

    assert metadata["chat_template"]["names"] == ["tokenizer_config.json", "chat_template.jinja"]
    (check,) = [c for c in checks if c.check == "chat_template"]
    assert (check.status, check.detail.startswith("'chat_template.jinja': ")) == ("fail", True)
    assert "'__class__', a Python internal" in check.detail


def test_a_hostile_additional_template_fails_its_check_by_its_path(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path)
    (tmp_path / hf.TEMPLATE_DIR).mkdir()
    corpus.write(tmp_path / hf.TEMPLATE_DIR, "rag.jinja", "{{ messages }}")
    corpus.write(tmp_path / hf.TEMPLATE_DIR, "tool_use.jinja", "{{ joiner.__init__ }}")
    corpus.write(tmp_path / hf.TEMPLATE_DIR, "notes.txt", "{{ ''.__class__ }}")  # transformers skips it

    metadata, checks, _ = _read(tmp_path)

    assert metadata["chat_template"]["names"] == [
        "tokenizer_config.json",
        "additional_chat_templates/rag.jinja",
        "additional_chat_templates/tool_use.jinja",
    ]
    (check,) = [c for c in checks if c.check == "chat_template"]
    assert check.status == "fail"
    assert check.detail.startswith("'additional_chat_templates/tool_use.jinja': the chat template reads the")


def test_named_chat_templates_are_recorded_by_name(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path, chat_template=None)
    corpus.write_json(
        tmp_path, "tokenizer_config.json", {"chat_template": [{"name": "default", "template": "{{ x }}"}]}
    )

    metadata, _, _ = _read(tmp_path)

    assert metadata["chat_template"] == {"present": True, "length": 7, "names": ["default"]}


def test_a_hostile_one_of_several_named_chat_templates_is_named_in_the_failed_check(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path, chat_template=None)
    named = [
        {"name": "default", "template": "{{ x }}"},
        {"name": "tool_use", "template": "{{ x.__class__ }}"},
    ]
    corpus.write_json(tmp_path, "tokenizer_config.json", {"chat_template": named})

    _, checks, _ = _read(tmp_path)

    (check,) = [c for c in checks if c.check == "chat_template"]
    assert check.status == "fail"
    assert check.detail.startswith("'tool_use': ")


def test_a_gpt2_config_is_read_under_the_usual_names(tmp_path: Path) -> None:
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "n_layer": 12,
        "n_embd": 768,
        "n_head": 12,
        "n_positions": 1024,
    }
    corpus.write_hf_folder(tmp_path, config={**config, "vocab_size": 50257})

    metadata, checks, kind = _read(tmp_path)

    assert kind == "causal-lm"
    assert (metadata["num_hidden_layers"], metadata["hidden_size"], metadata["num_attention_heads"]) == (
        12,
        768,
        12,
    )
    assert metadata["context_length"] == 1024
    assert _statuses(checks)["config_required_keys"] == "pass"


def test_a_multimodal_config_gives_its_language_models_sizes(tmp_path: Path) -> None:
    text = {k: v for k, v in corpus.LLAMA_CONFIG.items() if k != "architectures"}
    config = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "text_config": text}
    corpus.write_hf_folder(tmp_path, config=config)

    metadata, checks, kind = _read(tmp_path)

    assert kind == "causal-lm"
    assert metadata["model_type"] == "llava"
    assert metadata["num_hidden_layers"] == 2
    assert _statuses(checks)["config_required_keys"] == "pass"


def test_a_causal_lm_config_without_its_sizes_fails_naming_them(tmp_path: Path) -> None:
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "vocab_size": 10}
    corpus.write_hf_folder(tmp_path, config=config)

    _, checks, _ = _read(tmp_path)

    failed = next(c for c in checks if c.check == "config_required_keys")
    assert failed.status == "fail"
    assert "missing num_hidden_layers, num_attention_heads" in failed.detail
    assert failed.file == "config.json"


@pytest.mark.parametrize("value", ["64", -1, 0, True, 2**60, None])
def test_a_size_that_is_not_a_positive_integer_fails(tmp_path: Path, value: object) -> None:
    corpus.write_hf_folder(tmp_path, config={**corpus.LLAMA_CONFIG, "hidden_size": value})

    metadata, checks, _ = _read(tmp_path)

    assert _statuses(checks)["config_required_keys"] == "fail"
    json.dumps(metadata, allow_nan=False)


def test_metadata_stays_storable_json_when_the_config_holds_nan(tmp_path: Path) -> None:
    corpus.write(tmp_path, "config.json", json.dumps({**corpus.LLAMA_CONFIG, "head_dim": float("nan")}))

    metadata, _, _ = hf.read_folder(tmp_path, ["config.json"])

    json.dumps(metadata, allow_nan=False)


def test_a_missing_tokenizer_is_a_warning(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path, tokenizer=False)

    _, checks, _ = _read(tmp_path)

    assert _statuses(checks)["tokenizer_present"] == "warn"


def test_a_config_that_is_not_json_fails_and_leaves_the_kind_unknown(tmp_path: Path) -> None:
    corpus.write(tmp_path, "config.json", "{broken")

    metadata, checks, kind = hf.read_folder(tmp_path, ["config.json"])

    assert kind == ""
    assert metadata == {}
    assert checks == (Check("config_json", "fail", checks[0].detail, "config.json"),)
    assert "not valid JSON" in checks[0].detail


def test_an_oversized_config_fails_unread(tmp_path: Path) -> None:
    corpus.oversized_json(tmp_path)

    _, checks, _ = hf.read_folder(tmp_path, ["config.json"])

    assert checks[0].status == "fail"
    assert "larger than" in checks[0].detail


def test_only_the_listed_files_are_opened(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path)

    metadata, checks, kind = hf.read_folder(tmp_path, ["model-00001-of-00002.safetensors"])

    assert (metadata, checks, kind) == ({}, (), "")


@pytest.mark.parametrize(
    ("config", "markers", "kind"),
    [
        ({"architectures": ["BertModel"], "num_hidden_layers": 2, "hidden_size": 8}, [], "embedding"),
        ({"architectures": ["MPNetForMaskedLM"]}, ["modules.json"], "embedding"),
        ({"architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True}, [], "seq2seq-lm"),
        ({"architectures": ["RobertaForMaskedLM"]}, [], "masked-lm"),
        ({"architectures": ["BertForSequenceClassification"]}, [], "classifier"),
        ({"architectures": ["WhisperEncoderThing"]}, [], "other"),
        ({"model_type": "llama"}, [], "other"),
    ],
)
def test_the_kind_follows_the_architecture(
    tmp_path: Path, config: dict[str, Any], markers: list[str], kind: str
) -> None:
    corpus.write_json(tmp_path, "config.json", config)
    for marker in markers:
        corpus.write_json(tmp_path, marker, [])

    _, _, found = hf.read_folder(tmp_path, ["config.json", *markers])

    assert found == kind


def test_an_adapter_folder_names_its_base_model(tmp_path: Path) -> None:
    names = corpus.write_adapter_folder(tmp_path)

    metadata, checks, kind = hf.read_folder(tmp_path, names)

    assert kind == "adapter"
    assert metadata["adapter"] == {
        "peft_type": "LORA",
        "base_model_name_or_path": "meta-llama/Llama-3.1-8B",
        "r": 16,
        "lora_alpha": 32,
        "task_type": "CAUSAL_LM",
        "target_modules": ["q_proj", "v_proj"],
    }
    assert _statuses(checks) == {
        "adapter_config_json": "pass",
        "adapter_required_keys": "pass",
        "adapter_weights": "pass",
    }


def test_a_lora_adapter_without_its_rank_fails(tmp_path: Path) -> None:
    names = corpus.write_adapter_folder(
        tmp_path, {"peft_type": "LORA", "base_model_name_or_path": "x", "lora_alpha": 8}
    )

    _, checks, _ = hf.read_folder(tmp_path, names)

    failed = next(c for c in checks if c.check == "adapter_required_keys")
    assert (failed.status, failed.detail) == ("fail", "missing r, target_modules")


def test_adapter_weights_without_an_adapter_config_fail(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path, "adapter_model.safetensors")

    _, checks, kind = hf.read_folder(tmp_path, ["adapter_model.safetensors"])

    assert kind == "adapter"
    assert _statuses(checks) == {"adapter_required_keys": "fail"}


def test_an_adapter_config_without_weights_fails(tmp_path: Path) -> None:
    names = corpus.write_adapter_folder(tmp_path)

    _, checks, _ = hf.read_folder(tmp_path, [n for n in names if n != "adapter_model.safetensors"])

    assert _statuses(checks)["adapter_weights"] == "fail"
