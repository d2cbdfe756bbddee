"""A scan and a validation of versions whose files lie about their size: a config.json that does not
describe its weights, weights files that hold no tensors. Real files in a tmp model root; tasks
are run in this process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from apps.models.domain.states import ValidationState
from tests.models.formats import corpus
from tests.models.formats import corpus_gguf_onnx as gguf_onnx
from tests.models.scans import report_lines, scan_now, validated, version_at

pytestmark = pytest.mark.django_db

GiB = 1024**3
# The repro: the demo LM's config.json with these sizes, its weights left as they are.
INFLATED = {"n_layer": 96, "n_embd": 16384, "n_head": 128, "n_positions": 8192}


def _estimate_from_weights(version: Any, settings: Any) -> None:
    estimate = version.vram_estimate
    overhead = max(
        settings.MOC_VRAM_OVERHEAD_MIN_BYTES, round(estimate["weights"] * settings.MOC_VRAM_OVERHEAD_SHARE)
    )
    assert estimate["kv_cache"] == 0
    assert estimate["basis"] == (
        "no KV cache counted: the architecture does not describe the weights (config_matches_weights failed)"
    )
    assert version.estimated_vram_bytes == estimate["total"] == estimate["weights"] + overhead


def test_the_demo_lm_with_an_inflated_config_is_invalid_and_estimated_from_its_weights(
    root: Path, demo_models: Path, settings: Any
) -> None:
    shutil.copytree(demo_models / "demo-gpt2", root / "demo-gpt2")
    shutil.copytree(demo_models / "demo-gpt2", root / "demo-gpt2-big")
    config_path = root / "demo-gpt2-big" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **INFLATED}))

    scan_now()
    sound, big = validated(version_at(root / "demo-gpt2")), validated(version_at(root / "demo-gpt2-big"))

    assert sound.validation_state == ValidationState.VALID
    assert report_lines(sound, "config_matches_weights")[0]["status"] == "pass"
    assert big.validation_state == ValidationState.INVALID
    [line] = report_lines(big, "config_matches_weights")
    assert line["status"] == "fail"
    assert "config.json implies 309,409,120,256 parameters (gpt2: 96 layers, hidden 16,384)" in line["detail"]
    assert "the weights hold 173,824 in 2 layers" in line["detail"]
    assert "config_matches_weights" in big.validation_error
    _estimate_from_weights(big, settings)
    assert big.estimated_vram_bytes < 1 * GiB  # 24.5 GiB from the config's claim before
    assert big.params_count == sound.params_count == 173_824


def test_a_folder_whose_config_inflates_its_weights_is_invalid_with_both_figures(
    root: Path, settings: Any
) -> None:
    inflated = {
        **corpus.LLAMA_CONFIG,
        "num_hidden_layers": 96,
        "hidden_size": 16384,
        "num_attention_heads": 128,
    }
    corpus.write_hf_folder(root / "llama-big", config=inflated)

    scan_now()
    version = validated(version_at(root / "llama-big"))

    assert version.validation_state == ValidationState.INVALID
    [line] = report_lines(version, "config_matches_weights")
    assert "(llama: 96 layers, hidden 16,384)" in line["detail"]
    assert f"the weights hold {corpus.LLAMA_PARAMS:,} in 2 layers" in line["detail"]
    _estimate_from_weights(version, settings)


def test_a_gguf_file_whose_metadata_describes_its_tensors_is_valid(root: Path) -> None:
    corpus.write(root, "tiny.gguf", gguf_onnx.tiny_gguf())

    scan_now()
    version = validated(version_at(root / "tiny.gguf"))

    assert version.validation_state == ValidationState.VALID
    [line] = report_lines(version, "config_matches_weights")
    assert (line["status"], line["detail"]) == (
        "pass",
        "the GGUF metadata implies 78,016 parameters (llama: 1 layer, hidden 64);"
        " the weights hold 78,016 in 1 layer",
    )
    assert version.vram_estimate["kv_cache"] > 0


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.safetensors", corpus.raw_safetensors("{}", data_bytes=0)),
        ("empty.gguf", gguf_onnx.gguf_file(kvs=gguf_onnx.tiny_gguf_kvs())),
    ],
    ids=["safetensors", "gguf"],
)
def test_a_weights_file_holding_no_tensors_is_an_invalid_version(
    root: Path, name: str, content: bytes
) -> None:
    corpus.write(root, name, content)

    scan = scan_now()
    version = validated(version_at(root / name))

    assert scan.failed == 0  # its header is well formed
    assert version.validation_state == ValidationState.INVALID
    assert f"{name}: tensors_present: the file holds no tensors" in version.validation_error


# Ways around a family's count: each gave a skip that still trusted the config's sizes.
DODGES = {
    "unknown-family": {**INFLATED, "model_type": "opt"},
    "no-model-type": {**INFLATED, "model_type": None},
    "model-type-spelt-otherwise": {**INFLATED, "model_type": "GPT2 "},
    "positions-deleted": {**INFLATED, "n_positions": None},
}


@pytest.mark.parametrize("change", DODGES.values(), ids=DODGES.keys())
def test_the_inflated_demo_lm_is_invalid_however_its_config_hides_its_family(
    root: Path, demo_models: Path, settings: Any, change: dict[str, Any]
) -> None:
    shutil.copytree(demo_models / "demo-gpt2", root / "demo-gpt2-big")
    config_path = root / "demo-gpt2-big" / "config.json"
    config = {**json.loads(config_path.read_text()), **change}
    config_path.write_text(json.dumps({key: value for key, value in config.items() if value is not None}))

    scan_now()
    big = validated(version_at(root / "demo-gpt2-big"))

    assert big.validation_state == ValidationState.INVALID
    assert report_lines(big, "config_matches_weights")[0]["status"] == "fail"
    _estimate_from_weights(big, settings)


def test_a_config_its_weights_cannot_confirm_counts_no_kv_cache(root: Path) -> None:
    # Neither numbered layers nor a token embedding: nothing in the names to hold the config to.
    folder = root / "custom"
    corpus.write_safetensors(folder, "model.safetensors", {"encoder.w1": ("F16", [64, 64])})
    config = {"model_type": "custom", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4}
    corpus.write_json(folder, "config.json", config)

    scan_now()
    version = validated(version_at(folder))

    [line] = report_lines(version, "config_matches_weights")
    assert line["status"] == "skip"
    assert "the tensor names number no layers; no token embedding tensor is named" in line["detail"]
    assert version.vram_estimate["kv_cache"] == 0
    assert version.vram_estimate["basis"] == (
        "no KV cache counted: the weights do not confirm the architecture's sizes"
        " (config_matches_weights skipped)"
    )
