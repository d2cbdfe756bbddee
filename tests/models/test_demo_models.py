"""The models_demo command: four small real artefacts, made here and read back by their own libraries.

One run of the command (about 15 s: imports, 4 s of training, the ONNX export) serves the
read-back tests; the network is blocked for the whole suite, so a download would fail them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.models import demo
from apps.models.demo import lora
from tests.procs import ROOT

NEEDS = "the demo extra (torch==2.13.0, transformers, peft, onnx, onnxscript, gguf) is not installed"


def _run(out: Path, *args: str) -> str:
    buf = StringIO()
    call_command("models_demo", "--out", str(out), *args, stdout=buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The four artefacts in a fresh folder, and what the command printed making them."""
    for name in demo.REQUIRED:
        pytest.importorskip(name, reason=NEEDS)
    out = tmp_path_factory.mktemp("roots") / "models"
    return out, _run(out)


def test_command_writes_the_four_artefacts_and_says_how_big_they_are(made: tuple[Path, str]) -> None:
    out, printed = made

    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (out / demo.BASE / name).is_file()
    assert (out / demo.LORA / "adapter_config.json").is_file()
    assert (out / demo.LORA / "adapter_model.safetensors").is_file()
    assert (out / demo.ONNX / "model.onnx").is_file()
    assert (out / demo.GGUF).is_file()
    for name in (demo.BASE, demo.LORA, demo.ONNX, demo.GGUF):
        assert re.search(rf"{re.escape(name)}: wrote .*\(\d+\.\d KiB\)", printed)
    assert "4 made, 0 kept" in printed
    assert not list(out.glob(".*")), "no staging leftovers"
    assert all(p.stat().st_mode & 0o004 for p in out.rglob("*")), "readable by workers of another user"


@pytest.mark.parametrize(("name", "steps"), [(demo.BASE, demo.LM_STEPS), (demo.LORA, lora.STEPS)])
def test_training_ran_its_steps_and_lowered_the_loss_over_its_text(
    made: tuple[Path, str], name: str, steps: int
) -> None:
    _, printed = made

    found = re.search(rf"{re.escape(name)}: wrote .*loss (\d+\.\d+) -> (\d+\.\d+) over (\d+) steps", printed)

    assert found, printed
    before, after = float(found[1]), float(found[2])
    assert int(found[3]) == steps
    assert after < 2.0 < before


def test_the_lm_loads_back_with_transformers_and_generates_from_the_folder(made: tuple[Path, str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = made[0] / demo.BASE
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    prompt = tokenizer("The GPU", return_tensors="pt")

    with torch.no_grad():
        ids = model.generate(**prompt, max_new_tokens=12, do_sample=False)

    assert (model.config.model_type, model.config.n_layer, model.config.n_embd) == ("gpt2", 2, 64)
    assert 1000 <= model.config.vocab_size <= 2048
    assert ids.shape[1] == prompt["input_ids"].shape[1] + 12
    assert tokenizer.decode(ids[0]).startswith("The GPU")
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


# peft calls a transformers method that transformers 5 marks deprecated; nothing of ours.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_the_adapter_names_its_base_by_path_and_changes_the_base_when_loaded(made: tuple[Path, str]) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = made[0]
    config = json.loads((out / demo.LORA / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(out / demo.BASE, local_files_only=True)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        plain = base(input_ids=ids).logits

        adapted = PeftModel.from_pretrained(base, out / demo.LORA).eval()
        changed = adapted(input_ids=ids).logits

    assert config["base_model_name_or_path"] == str((out / demo.BASE).resolve())
    assert (config["peft_type"], config["task_type"]) == ("LORA", "CAUSAL_LM")
    assert not torch.allclose(plain, changed)


def test_the_onnx_export_runs_and_agrees_with_torch(made: tuple[Path, str]) -> None:
    import numpy as np
    import onnx
    import torch
    from transformers import AutoModelForCausalLM

    path = made[0] / demo.ONNX / "model.onnx"
    onnx.checker.check_model(str(path))
    try:
        import onnxruntime
    except ImportError:
        pytest.skip("onnxruntime is not installed; onnx.checker passed")
    ids = np.array([[3, 4, 5, 6, 7], [8, 9, 10, 11, 12], [1, 2, 3, 4, 5]], dtype=np.int64)

    logits = onnxruntime.InferenceSession(str(path)).run(["logits"], {"input_ids": ids})[0]

    model = AutoModelForCausalLM.from_pretrained(made[0] / demo.BASE, local_files_only=True)
    with torch.no_grad():
        expected = model(input_ids=torch.from_numpy(ids)).logits.numpy()
    assert logits.shape == (3, 5, model.config.vocab_size)
    assert np.allclose(logits, expected, atol=1e-4)


def test_the_gguf_file_reads_back_as_gpt2_with_the_lms_weights(made: tuple[Path, str]) -> None:
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    reader = gguf.GGUFReader(made[0] / demo.GGUF)

    def field(key: str) -> object:
        return reader.fields[key].contents()

    tensors = {t.name: t for t in reader.tensors}
    weights = load_file(made[0] / demo.BASE / "model.safetensors")
    assert field("general.architecture") == "gpt2"
    assert (field("gpt2.block_count"), field("gpt2.embedding_length"), field("gpt2.context_length")) == (
        2,
        64,
        128,
    )
    assert field("tokenizer.ggml.model") == "gpt2"
    assert len(field("tokenizer.ggml.tokens")) == weights["transformer.wte.weight"].shape[0]
    assert {"token_embd.weight", "blk.1.attn_qkv.weight", "output_norm.bias", "output.weight"} <= set(tensors)
    embd = tensors["token_embd.weight"]
    assert embd.tensor_type == gguf.GGMLQuantizationType.F16
    assert np.allclose(embd.data, weights["transformer.wte.weight"], atol=1e-3)
    # Conv1D weights are stored [in, out] by GPT-2 and transposed for GGUF.
    qkv = tensors["blk.0.attn_qkv.weight"].data
    assert np.allclose(qkv, weights["transformer.h.0.attn.c_attn.weight"].T, atol=1e-3)


def test_a_second_run_keeps_what_exists_without_importing_the_demo_libraries(
    made: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "models"
    shutil.copytree(made[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    # A fresh process: this one imported torch long ago. scripts/run.sh runs this on every start.
    code = (
        "import sys, django; django.setup();"
        "from django.core.management import call_command;"
        f"call_command('models_demo', '--out', {str(out)!r});"
        f"print(sorted(set({demo.REQUIRED!r}) & set(sys.modules)))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "moc_site.settings", "MOC_VAR_DIR": str(tmp_path / "var")}

    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("exists, kept") == 4
    assert "0 made, 4 kept" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]", "imported the demo libraries to keep the files"
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_missing_export_is_made_and_the_rest_kept(made: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "models"
    shutil.copytree(made[0], out)
    kept = (out / demo.BASE / "model.safetensors").stat().st_mtime_ns
    (out / demo.GGUF).unlink()

    printed = _run(out)

    assert "1 made, 3 kept" in printed
    assert (out / demo.GGUF).is_file()
    assert (out / demo.BASE / "model.safetensors").stat().st_mtime_ns == kept


def test_force_remakes_all_four(made: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "models"
    shutil.copytree(made[0], out)
    before = {name: (out / name).stat().st_mtime_ns for name in demo.ARTEFACTS}

    printed = _run(out, "--force", "--steps", "1")

    assert "4 made, 0 kept" in printed
    assert all((out / name).stat().st_mtime_ns != before[name] for name in demo.ARTEFACTS)


def test_a_missing_base_is_remade_along_with_everything_derived_from_it(
    made: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "models"
    shutil.copytree(made[0], out)
    shutil.rmtree(out / demo.BASE)

    printed = _run(out, "--steps", "1")

    assert "4 made, 0 kept" in printed
    config = json.loads((out / demo.LORA / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((out / demo.BASE).resolve())
    assert (out / demo.BASE / "model.safetensors").is_file()


def test_without_the_demo_packages_it_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` fail

    with pytest.raises(CommandError, match=r"not installed: .*peft.*pip install"):
        _run(tmp_path)

    assert not any(tmp_path.iterdir())


def test_negative_steps_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--steps"):
        _run(tmp_path, "--steps", "-1")


def test_without_model_roots_it_asks_for_a_folder(settings: Any) -> None:
    settings.MOC_MODEL_ROOTS = []

    with pytest.raises(CommandError, match="--out"):
        call_command("models_demo", stdout=StringIO())
