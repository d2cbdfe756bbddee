"""A Hugging Face causal LM (and a peft adapter on it) loaded for a job: offline, no remote code,
safetensors only.

Serving's loader (apps.serving.runtimes.hf) loads for inference under a load guard and measures the
load for the memory ledger; a job loads to train or to score on the memory its reservation already
holds, so it needs neither, and it needs what serving never does: trainable weights, a fresh LoRA
adapter, an adapter resumed from a checkpoint with its gradients on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Read by huggingface_hub when it is first imported, so before transformers below (as in serving's loader).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DEACTIVATE_ASYNC_LOAD"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.pytorch_utils import Conv1D  # noqa: E402

from apps.jobs.domain import memory  # noqa: E402
from apps.jobs.domain.failures import DeviceLost, JobFailure, RuntimeMissing  # noqa: E402
from apps.serving.domain.errors import DeviceLost as ServingDeviceLost  # noqa: E402
from apps.serving.runtimes.hf import check_device  # noqa: E402

transformers.utils.logging.disable_progress_bar()

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class LoadFailed(JobFailure):
    """The folder does not hold a loadable model (no config, no safetensors, damaged weights)."""


@dataclass(frozen=True, slots=True)
class LoraSpec:
    """A fresh LoRA adapter to train. `targets` None: peft's default modules for the architecture."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: tuple[str, ...] | None = None


@dataclass
class LoadedLM:
    """A causal LM on `device` with its tokenizer (which always has a pad token: its end token when
    the model names none). `model` is a peft model when an adapter was loaded or made."""

    model: Any
    tokenizer: Any
    device: str

    @property
    def adapter(self) -> bool:
        return hasattr(self.model, "peft_config")

    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def shape(self) -> memory.Shape:
        """What domain.memory's estimates need to know about this model."""
        config = self.model.config
        dtype = next(self.model.parameters()).dtype
        return memory.Shape(
            params=sum(p.numel() for p in self.model.parameters()),
            hidden=_config_int(config, "hidden_size", "n_embd", "d_model"),
            layers=_config_int(config, "num_hidden_layers", "n_layer", "num_layers"),
            vocab=_config_int(config, "vocab_size"),
            dtype_bytes=torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4,
        )

    def base_shape(self) -> memory.Shape:
        """shape() without an adapter's weights: the base model's, as the registry reads it and the
        dispatcher reserves for it (domain.memory.fine_tune_bytes adds the adapter itself)."""
        shape = self.shape()
        if not self.adapter:
            return shape
        adapter = sum(p.numel() for name, p in self.model.named_parameters() if "lora_" in name)
        return replace(shape, params=shape.params - adapter)


def load_causal_lm(
    *,
    path: str,
    device: str,
    base_path: str | None = None,
    trainable: bool = False,
    lora: LoraSpec | None = None,
) -> LoadedLM:
    """The causal LM in the Hugging Face folder `path` on `device`.

    With `base_path`, `path` is a peft adapter folder put on the base model at `base_path` (its
    weights trainable when `trainable`). With `lora`, a fresh adapter is put on the loaded model and
    only it trains. Trainable models load in float32 (in train mode); others in their stored dtype,
    in eval mode. The tokenizer is the base's.
    """
    try:
        check_device(device)
    except ServingDeviceLost as exc:
        raise DeviceLost(str(exc)) from exc
    model_folder = Path(base_path or path)
    model = _model(model_folder, dtype=torch.float32 if trainable or lora else "auto")
    tokenizer = load_tokenizer(str(model_folder))
    if base_path is not None:
        model = _adapter(model, Path(path), trainable=trainable)
    elif lora is not None:
        model = _fresh_adapter(model, lora)
    model.to(device)
    model.train(trainable or lora is not None)
    return LoadedLM(model=model, tokenizer=tokenizer, device=device)


def _model(folder: Path, *, dtype: Any) -> Any:
    if not (folder / "config.json").is_file():
        raise LoadFailed(f"{folder} is not a Hugging Face model folder (it has no config.json)")
    if not any(folder.glob("*.safetensors")):
        raise LoadFailed(
            f"{folder.name} has no .safetensors weights; jobs load safetensors only (convert a pickle first)"
        )
    try:
        return AutoModelForCausalLM.from_pretrained(
            folder,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=dtype,
        )
    except ValueError as exc:
        if "Unrecognized" in str(exc) or "does not recognize" in str(exc):
            raise RuntimeMissing(f"{folder.name}: this worker's transformers cannot load it: {exc}") from exc
        raise LoadFailed(f"{folder.name} could not be loaded: {exc}") from exc
    except OSError as exc:
        raise LoadFailed(f"{folder.name} could not be loaded: {exc}") from exc


def load_tokenizer(path: str) -> Any:
    """The tokenizer of the Hugging Face folder at `path`, with a pad token (its end token when it
    names none)."""
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _adapter(model: Any, folder: Path, *, trainable: bool) -> Any:
    if not (folder / ADAPTER_CONFIG).is_file():
        raise LoadFailed(f"{folder} is not a peft adapter folder (it has no {ADAPTER_CONFIG})")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise LoadFailed(f"{folder.name} has no {ADAPTER_WEIGHTS}; jobs load safetensors only")
    return PeftModel.from_pretrained(model, folder, is_trainable=trainable)


def _fresh_adapter(model: Any, spec: LoraSpec) -> Any:
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.targets) if spec.targets else None,
        # GPT-2 and its kin keep their projections as Conv1D, whose weights are stored transposed.
        fan_in_fan_out=any(isinstance(m, Conv1D) for m in model.modules()),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _config_int(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 0
