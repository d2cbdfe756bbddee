"""Model runtimes on a device's worker: a version's files made into a live model, and requests on it.

The worker's Celery tasks call `load(spec)` and then the returned model's request methods from
its thread pool, and `close()` to unload. Nothing here touches Django. Importing this package
imports no runtime library: each runtime module (transformers, onnxruntime, llama.cpp) is
imported by `load` only when a version needs it, so MOC runs without the demo extra.
"""

from __future__ import annotations

import importlib.util

from apps.serving.domain.errors import BadInput, RuntimeMissing
from apps.serving.domain.tasks import tasks_for
from apps.serving.runtimes import gguf
from apps.serving.runtimes.base import DeadlineExceeded, Loaded, LoadSpec, Unloaded, serving_error
from apps.serving.runtimes.gguf import MISSING as GGUF_MISSING

__all__ = [
    "DeadlineExceeded",
    "LoadSpec",
    "Loaded",
    "Unloaded",
    "load",
    "runtime_available",
]

_ADAPTER_NEEDS = (
    ("torch", "transformers", "safetensors", "peft"),
    "adapters need torch, transformers and peft, which are not installed on this worker",
)
# The packages each format's runtime needs, and what to say when one is absent. A bare weights
# file is served only as an adapter's weights, so those formats need what adapters need.
_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "hf": (
        ("torch", "transformers", "safetensors"),
        "Hugging Face models need torch and transformers, which are not installed on this worker",
    ),
    "onnx": (("onnxruntime", "numpy"), "ONNX models need onnxruntime, which is not installed on this worker"),
    "gguf": (("llama_cpp",), GGUF_MISSING),
    "safetensors": _ADAPTER_NEEDS,
    "pytorch": _ADAPTER_NEEDS,
}


def runtime_available(format: str) -> tuple[bool, str]:
    """Whether this worker has the libraries to load `format`, and if not, a sentence saying what is missing.

    Looks the packages up without importing them, so asking is cheap."""
    needs = _NEEDS.get(format)
    if needs is None:
        return False, f"MOC has no runtime for {format or 'an unknown'} format on its own"
    return _present(*needs)


def load(spec: LoadSpec) -> Loaded:
    """Load the version `spec` describes onto the worker's device, raising ServingError subclasses
    (its guard's LoadCancelled or OverReservation when it was stopped)."""
    if spec.guard is not None:
        spec.guard.check()  # stopped while it waited or while the worker imported the runtime
    if spec.kind == "adapter":
        _require(*_ADAPTER_NEEDS)
        from apps.serving.runtimes import hf  # deferred: imports torch, transformers and peft

        return hf.load_adapter(spec)
    if not tasks_for(spec.kind, spec.format):
        if spec.format in ("safetensors", "pytorch"):
            raise BadInput(
                f"a bare {spec.format} file holds weights without an architecture; register the"
                " Hugging Face folder it came from (config.json, tokenizer and weights) to serve it"
            )
        raise BadInput(f"MOC cannot serve a {spec.kind or 'model of unknown kind'} in {spec.format} format")
    if not (spec.device == "cpu" or spec.device.startswith("cuda")):
        raise BadInput(f"unknown device {spec.device!r}: a worker's device is cpu or cuda:N")
    try:
        return _load(spec)
    except OSError as exc:  # the files vanished or cannot be read
        raise serving_error(exc, subject=f"loading {spec.path}") from exc


def _load(spec: LoadSpec) -> Loaded:
    if spec.format == "gguf":
        return gguf.load(spec)
    if spec.format == "onnx" or spec.kind == "onnx-graph":
        _require(*_NEEDS["onnx"])
        from apps.serving.runtimes import onnx  # deferred: imports onnxruntime and numpy

        return onnx.load(spec)
    _require(*_NEEDS["hf"])
    from apps.serving.runtimes import hf  # deferred: imports torch and transformers

    return hf.load(spec)


def _present(packages: tuple[str, ...], sentence: str) -> tuple[bool, str]:
    if all(importlib.util.find_spec(name) is not None for name in packages):
        return True, ""
    return False, sentence


def _require(packages: tuple[str, ...], sentence: str) -> None:
    ok, why = _present(packages, sentence)
    if not ok:
        raise RuntimeMissing(why)
