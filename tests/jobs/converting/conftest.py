"""Pickle checkpoints of the demo LM made here with torch.save, under a tmp model root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from apps.models import demo


class Hostile:
    """Unpickling this runs a shell command that creates `marker` (what a weights-only load must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def root(tmp_path: Path, settings: Any) -> Path:
    """An empty model root, the only one configured, where conversions write their output."""
    folder = tmp_path / "models"
    folder.mkdir()
    settings.MOC_MODEL_ROOTS = [str(folder)]
    settings.MOC_FINETUNE_OUTPUT_ROOT = str(folder / "fine-tuned")
    return folder


def side_files(source: Path, into: Path) -> None:
    """The demo LM's config and tokenizer files, without its safetensors weights."""
    into.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.suffix != ".safetensors":
            shutil.copyfile(path, into / path.name)


@pytest.fixture
def pickled(root: Path, demo_models: Path) -> Path:
    """The demo LM as a Hugging Face folder with pickle weights only (pytorch_model.bin, its tied
    embedding and head sharing one tensor, as torch.save keeps them)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = root / "demo-pt"
    side_files(demo_models / demo.BASE, folder)
    model = AutoModelForCausalLM.from_pretrained(demo_models / demo.BASE, local_files_only=True)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.fixture
def hostile(root: Path, demo_models: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A model folder whose pytorch_model.bin runs `touch <marker>` when unpickled; (folder, marker)."""
    import torch

    folder = root / "demo-hostile"
    side_files(demo_models / demo.BASE, folder)
    marker = tmp_path / "PWNED"
    torch.save(
        {"transformer.wte.weight": torch.zeros(4, 4), "payload": Hostile(marker)},
        folder / "pytorch_model.bin",
    )
    return folder, marker
