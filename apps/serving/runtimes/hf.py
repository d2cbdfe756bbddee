"""Hugging Face folders through transformers: causal LMs and embedding models, and peft adapters on them.

Nothing here reaches a hub (HF_HUB_OFFLINE, local_files_only) or runs a model's own code
(trust_remote_code is always False). Weights come from safetensors; pickle weights
(pytorch_model.bin) load only where an admin allowed them, and then through torch's weights-only
unpickler (`weights_only=True` is passed to transformers, which hands it to torch.load; peft
reads adapter_model.bin the same way), which refuses any pickle that would import code.
"""

from __future__ import annotations

import copy
import gc
import itertools
import os
import time
from pathlib import Path
from typing import Any

# Read by huggingface_hub when it is first imported, so before transformers below.
os.environ["HF_HUB_OFFLINE"] = "1"
# Read by transformers at each from_pretrained: without it, tensors are built in a thread pool of its
# own (core_model_loading), where the load guard's stop cannot reach, and the ones in flight would
# go on being built after a stopped load was freed. Set here, where a device worker first needs it.
os.environ["HF_DEACTIVATE_ASYNC_LOAD"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING, AutoConfig, AutoTokenizer  # noqa: E402

from apps.serving.domain.errors import (  # noqa: E402
    BadInput,
    CorruptFile,
    DeviceLost,
    NotAllowed,
    RuntimeMissing,
    ServingError,
)
from apps.serving.runtimes import guard, memory  # noqa: E402
from apps.serving.runtimes.base import (  # noqa: E402
    EMBED,
    GENERATE,
    LoadSpec,
    serving_error,
)
from apps.serving.runtimes.hf_model import TransformersLoaded  # noqa: E402

# A worker has no terminal to draw progress bars on.
transformers.utils.logging.disable_progress_bar()

PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# What peft and torch say when an adapter was trained on a different architecture or size.
_MISFIT_WORDS = ("size mismatch", "not found in the base model")


def load(spec: LoadSpec) -> TransformersLoaded:
    """A causal LM or embedding model from a Hugging Face folder, on `spec.device`, in eval mode."""
    folder = Path(spec.path)
    if not folder.is_dir():
        raise CorruptFile(f"{folder} is not a folder; a Hugging Face model is a folder with config.json")
    check_device(spec.device)
    safe, use_safetensors = _weights(folder, allow_pickle=spec.allow_pickle)
    _check_safetensors(safe)
    mapping = MODEL_FOR_CAUSAL_LM_MAPPING if spec.kind == "causal-lm" else MODEL_MAPPING
    meter = memory.meter_for(spec.device, torch_allocator=True)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        # The model's class and the tokenizer come first: their one-time imports and set-up are
        # the library's memory, not the model's, and must stay out of the measured window.
        model_class = _model_class(mapping, config, spec.kind, folder.name)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        before = memory.snapshot(spec.device, meter)
        started = time.perf_counter()
        with guard.watching(spec.guard, spec.device, meter):
            model, info = model_class.from_pretrained(
                folder,
                config=config,
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=use_safetensors,
                weights_only=True,
                dtype="auto",
                device_map=spec.device,
                output_loading_info=True,
            )
        seconds = time.perf_counter() - started
        after = memory.snapshot(spec.device, meter)
    except ServingError:
        raise  # already in MOC's words: the load guard's verdict, or a check above
    except Exception as exc:
        raise _failed(exc, folder.name, spec.device) from exc
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise CorruptFile(
            f"{folder.name}'s weights lack {len(missing)} tensors the model needs, e.g. {missing[0]}"
        )
    model.eval()
    weights = memory.tensor_bytes(itertools.chain(model.parameters(), model.buffers()))
    tasks = frozenset({GENERATE, EMBED}) if spec.kind == "causal-lm" else frozenset({EMBED})
    return TransformersLoaded(
        model=model,
        tokenizer=tokenizer,
        kind=spec.kind,
        device=spec.device,
        tasks=tasks,
        measured_bytes=memory.load_cost(before, after, floor=weights),
        load_seconds=seconds,
        weights_bytes=weights,
        meter=meter,
    )


def load_adapter(spec: LoadSpec) -> TransformersLoaded:
    """A peft adapter over its loaded base, leaving the base untouched for its own requests.

    The adapter's module tree is a copy of the base's that shares every parameter and buffer
    (deepcopy with those tensors in its memo), so it costs only the adapter's own weights, and
    peft's layer surgery happens on the copy, never on the modules the base serves with.
    """
    base = spec.base
    if base is None:
        raise BadInput("an adapter needs its base loaded first")
    if not isinstance(base, TransformersLoaded) or base._model is None:
        raise BadInput("an adapter's base must be a transformers model loaded in this worker")
    if base.device != spec.device:
        raise BadInput(f"the adapter is for {spec.device} but its base is loaded on {base.device}")
    folder = Path(spec.path)
    folder = folder.parent if folder.is_file() else folder
    if not (folder / "adapter_config.json").is_file():
        raise CorruptFile(f"{folder.name} has no adapter_config.json")
    present = [name for name in ADAPTER_FILES if (folder / name).is_file()]
    if not present:
        raise CorruptFile(f"{folder.name} has no adapter_model.safetensors")
    if present[0].endswith(".bin") and not spec.allow_pickle:
        raise _pickle_refused(folder.name, present[0])
    _check_safetensors([folder / name for name in present if name.endswith(".safetensors")])
    meter = memory.meter_for(spec.device, torch_allocator=True)
    base_model = base._model
    base_storages = memory.storages(itertools.chain(base_model.parameters(), base_model.buffers()))
    try:
        from peft import PeftConfig, PeftModel  # deferred: heavy, needed by adapters only

        config = PeftConfig.from_pretrained(folder)
        before = memory.snapshot(spec.device, meter)
        started = time.perf_counter()
        shared = {id(t): t for t in itertools.chain(base_model.parameters(), base_model.buffers())}
        with guard.watching(spec.guard, spec.device, meter):
            model = PeftModel.from_pretrained(
                copy.deepcopy(base_model, memo=shared),
                folder,
                config=config,
                is_trainable=False,
                low_cpu_mem_usage=True,
                torch_device=spec.device,
            )
        # The memo holds the copy too; it must not outlive the load.
        del shared
        seconds = time.perf_counter() - started
        after = memory.snapshot(spec.device, meter)
    except ServingError:
        raise  # already in MOC's words: the load guard's verdict, or a check above
    except Exception as exc:
        if any(words in str(exc) for words in _MISFIT_WORDS):
            raise BadInput(f"{folder.name} does not fit the base it was given: {exc}"[:2000]) from exc
        raise _failed(exc, folder.name, spec.device) from exc
    model.eval()
    weights = memory.tensor_bytes(itertools.chain(model.parameters(), model.buffers()), besides=base_storages)
    loaded = TransformersLoaded(
        model=model,
        tokenizer=base._tokenizer,
        tokenizer_lock=base._tokenizer_lock,
        kind="adapter",
        device=spec.device,
        tasks=base.tasks,
        measured_bytes=memory.load_cost(before, after, floor=weights),
        load_seconds=seconds,
        weights_bytes=weights,
        meter=meter,
    )
    loaded._facts["adapter"] = {
        "peft_type": str(getattr(config.peft_type, "value", config.peft_type)),
        "r": getattr(config, "r", None),
    }
    base._adapters.add(loaded)
    return loaded


def check_device(device: str) -> None:
    if device == "cpu":
        return
    if not torch.cuda.is_available():
        raise DeviceLost(f"{device} is not available to this worker: torch sees no CUDA device")
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        raise DeviceLost(
            f"{device} is not available: this worker sees {torch.cuda.device_count()} CUDA devices"
        )


def _model_class(mapping: Any, config: Any, kind: str, name: str) -> Any:
    try:
        return mapping[type(config)]
    except KeyError:
        raise RuntimeMissing(
            f"{name}: the transformers on this worker has no {kind} class for {type(config).__name__}"
        ) from None


def _weights(folder: Path, *, allow_pickle: bool) -> tuple[list[Path], bool]:
    """The folder's safetensors files and whether to load them, or refuse pickle-only weights."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith("adapter_model")]
    safe = sorted(p for p in files if p.suffix == ".safetensors")
    if safe:
        return safe, True
    pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        raise CorruptFile(f"{folder.name} holds no weights (no .safetensors, no pytorch_model.bin)")
    if not allow_pickle:
        raise _pickle_refused(folder.name, pickles[0])
    return [], False


def _pickle_refused(folder: str, name: str) -> NotAllowed:
    return NotAllowed(
        f"{folder} has only pickle weights ({name}); an admin must allow pickle for this version,"
        " and it is then read with torch's weights-only loader"
    )


def _check_safetensors(files: list[Path]) -> None:
    """Read each file's header and bounds, so a damaged file is named before transformers opens it."""
    from safetensors import safe_open  # deferred with the rest of the weights libraries

    for path in files:
        try:
            with safe_open(path, framework="pt") as handle:
                handle.keys()
        except Exception as exc:
            raise CorruptFile(f"{path.name} is damaged: {exc}") from exc


def _failed(exc: Exception, name: str, device: str) -> Exception:
    # A failed load may leave half-built tensors behind: give them back before anything else loads.
    gc.collect()
    memory.release_cached(device)
    text = str(exc)
    if "trust_remote_code" in text:
        return NotAllowed(f"{name} needs its own Python code to load; MOC never runs a model's code")
    if "does not recognize this architecture" in text or "Unrecognized model" in text:
        return RuntimeMissing(
            f"{name}: the transformers on this worker does not know its architecture: {text}"
        )
    return serving_error(exc, subject=f"loading {name}")
