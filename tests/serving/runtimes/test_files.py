"""Damaged, pickle-only, hostile and code-bearing Hugging Face folders, each refused with its class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from apps.models import demo
from apps.serving.domain.errors import CorruptFile, NotAllowed
from apps.serving.runtimes import LoadSpec, load

GREEDY = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "stop": [], "seed": 0, "deadline": None}


def copy_base(demo_models: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(demo_models / demo.BASE, folder)
    return folder


def hf(folder: Path, *, allow_pickle: bool = False) -> LoadSpec:
    return LoadSpec(path=str(folder), format="hf", kind="causal-lm", device="cpu", allow_pickle=allow_pickle)


def pickle_only(demo_models: Path, tmp_path: Path) -> Path:
    """The demo folder with its weights saved by torch.save instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    folder = copy_base(demo_models, tmp_path)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    return folder


def test_truncated_safetensors_weights_are_refused_as_corrupt_naming_the_file(
    demo_models: Path, tmp_path: Path
) -> None:
    folder = copy_base(demo_models, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])

    with pytest.raises(CorruptFile, match="model.safetensors is damaged"):
        load(hf(folder))


def test_weights_that_lack_a_tensor_are_refused_as_corrupt(demo_models: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = copy_base(demo_models, tmp_path)
    weights = load_file(folder / "model.safetensors")
    del weights["transformer.h.1.mlp.c_fc.weight"]
    save_file(weights, folder / "model.safetensors")

    with pytest.raises(
        CorruptFile, match=r"lack 1 tensors the model needs, e.g. transformer.h.1.mlp.c_fc.weight"
    ):
        load(hf(folder))


def test_a_config_that_needs_its_own_code_is_not_allowed(demo_models: Path, tmp_path: Path) -> None:
    folder = copy_base(demo_models, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "shiny-new"
    config["auto_map"] = {"AutoConfig": "configuration_shiny.ShinyConfig"}
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(NotAllowed, match="needs its own Python code"):
        load(hf(folder))


def test_a_folder_of_pickle_weights_is_not_allowed_unless_an_admin_allowed_it(
    demo_models: Path, tmp_path: Path
) -> None:
    folder = pickle_only(demo_models, tmp_path)

    with pytest.raises(NotAllowed, match=r"only pickle weights \(pytorch_model.bin\); an admin must allow"):
        load(hf(folder))


def test_allowed_pickle_weights_load_and_answer_like_the_safetensors(
    demo_models: Path, tmp_path: Path
) -> None:
    folder = pickle_only(demo_models, tmp_path)
    reference = load(hf(demo_models / demo.BASE))

    loaded = load(hf(folder, allow_pickle=True))

    assert loaded.generate(prompt="The registry", **GREEDY) == reference.generate(
        prompt="The registry", **GREEDY
    )
    loaded.close()
    reference.close()


def test_an_allowed_pickle_that_would_run_code_is_refused_by_the_weights_only_loader(
    demo_models: Path, tmp_path: Path
) -> None:
    import torch

    marker = tmp_path / "code-ran"

    class Hostile:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return open, (str(marker), "w")

    folder = pickle_only(demo_models, tmp_path)
    weights = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save({**weights, "extra": Hostile()}, folder / "pytorch_model.bin")

    with pytest.raises(NotAllowed, match="refused by the weights-only loader"):
        load(hf(folder, allow_pickle=True))
    assert not marker.exists()


@pytest.fixture
def pickle_adapter(demo_models: Path, tmp_path: Path) -> Path:
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "lora"
    shutil.copytree(demo_models / demo.LORA, folder)
    torch.save(load_file(folder / "adapter_model.safetensors"), folder / "adapter_model.bin")
    (folder / "adapter_model.safetensors").unlink()
    return folder


def test_an_adapter_with_only_pickle_weights_is_not_allowed(demo_models: Path, pickle_adapter: Path) -> None:
    base = load(hf(demo_models / demo.BASE))

    with pytest.raises(NotAllowed, match=r"only pickle weights \(adapter_model.bin\)"):
        load(LoadSpec(path=str(pickle_adapter), format="pytorch", kind="adapter", device="cpu", base=base))
    base.close()


def test_an_allowed_pickle_adapter_answers_like_the_safetensors_one(
    demo_models: Path, pickle_adapter: Path
) -> None:
    base = load(hf(demo_models / demo.BASE))
    reference = load(
        LoadSpec(
            path=str(demo_models / demo.LORA), format="safetensors", kind="adapter", device="cpu", base=base
        )
    )

    adapter = load(
        LoadSpec(
            path=str(pickle_adapter),
            format="pytorch",
            kind="adapter",
            device="cpu",
            base=base,
            allow_pickle=True,
        )
    )

    assert adapter.generate(prompt="The registry", **GREEDY) == reference.generate(
        prompt="The registry", **GREEDY
    )
    for loaded in (adapter, reference, base):
        loaded.close()


def test_a_missing_folder_is_refused_as_corrupt(tmp_path: Path) -> None:
    pytest.importorskip("transformers")

    with pytest.raises(CorruptFile, match="is not a folder"):
        load(hf(tmp_path / "gone"))
