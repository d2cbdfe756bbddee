"""ONNX graphs through onnxruntime: named tensors in, named tensors out, checked against the graph.

Requests are JSON, so a tensor is either {"dtype", "shape", "data": flat list} or a nested list
(its dtype then taken from the graph). Every input is checked against the session's own
signature (names, dtype, rank, fixed dimensions) before onnxruntime sees it, so a caller's
mistake comes back as BadInput naming the input rather than as a runtime error. Sizes are
capped both ways: a JSON reply of millions of floats would stall the worker and the web.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from apps.serving.domain.errors import BadInput, CorruptFile, ServingError
from apps.serving.runtimes import guard, memory
from apps.serving.runtimes.base import (
    TENSORS,
    DeadlineExceeded,
    Loaded,
    LoadSpec,
    check_deadline,
    serving_error,
)

MAX_ELEMENTS = 4 * 1024 * 1024  # per request, inputs and outputs each
MAX_RANK = 8
# onnxruntime's type names for the tensor types a JSON request can carry.
DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


class OnnxLoaded(Loaded):
    runtime = "onnxruntime"

    def __init__(self, *, session: ort.InferenceSession, file: str, **figures: Any) -> None:
        super().__init__(**figures)
        self._session: ort.InferenceSession | None = session
        self._inputs = {i.name: (DTYPES.get(i.type), list(i.shape)) for i in session.get_inputs()}
        self._facts = {
            "file": file,
            "providers": session.get_providers(),
            "inputs": [_signature(i) for i in session.get_inputs()],
            "outputs": [_signature(o) for o in session.get_outputs()],
        }

    def tensors(self, *, inputs: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        session = self._session
        if session is None:
            self._open()
        feeds = self._feeds(inputs)
        check_deadline(deadline, "before the graph ran")
        options = ort.RunOptions()
        # onnxruntime stops a run between nodes once its terminate flag is set, from any thread.
        timer = None
        if deadline is not None:
            timer = threading.Timer(
                max(0.0, deadline - time.monotonic()), setattr, (options, "terminate", True)
            )
            timer.daemon = True
            timer.start()
        try:
            results = session.run(None, feeds, options)
        except Exception as exc:
            if options.terminate:
                raise DeadlineExceeded("the request's deadline passed while the graph ran") from exc
            if "INVALID_ARGUMENT" in str(exc):
                raise BadInput(f"the graph refused the inputs: {exc}"[:2000]) from exc
            raise serving_error(exc, subject="running the graph") from exc
        finally:
            if timer is not None:
                timer.cancel()
        total = sum(int(np.size(r)) for r in results)
        if total > MAX_ELEMENTS:
            raise BadInput(
                f"the outputs hold {total:,} values, more than {MAX_ELEMENTS:,}; send a smaller input"
            )
        outputs = {}
        for meta, result in zip(session.get_outputs(), results, strict=True):
            array = np.asarray(result)
            outputs[meta.name] = {
                "dtype": str(array.dtype),
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
        return {"outputs": outputs}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._facts}

    def _feeds(self, inputs: object) -> dict[str, np.ndarray]:
        if not isinstance(inputs, dict):
            raise BadInput("inputs must be an object of input name to tensor")
        names = ", ".join(self._inputs)
        for name in inputs:
            if name not in self._inputs:
                raise BadInput(f"the graph has no input {str(name)[:100]!r}; it takes {names}")
        for name in self._inputs:
            if name not in inputs:
                raise BadInput(f"input {name!r} is missing; the graph takes {names}")
        feeds, total = {}, 0
        for name, value in inputs.items():
            dtype, dims = self._inputs[name]
            if dtype is None:
                raise BadInput(f"input {name!r} is not a tensor type a JSON request can carry")
            array = _array(name, value, dtype)
            _check_shape(name, array.shape, dims)
            total += array.size
            if total > MAX_ELEMENTS:
                raise BadInput(f"the inputs hold more than {MAX_ELEMENTS:,} values")
            feeds[name] = array
        return feeds

    def _drop(self) -> tuple[list[weakref.ref[Any]], str]:
        refs = [weakref.ref(self._session)]
        self._session = None
        return refs, ""


def load(spec: LoadSpec) -> OnnxLoaded:
    """An InferenceSession on the worker's device: CUDA where asked and available, else the CPU."""
    path = _model_file(Path(spec.path))
    providers = _providers(spec.device)
    on_cuda = providers[0] != _CPU
    meter = memory.meter_for(spec.device if on_cuda else "cpu", torch_allocator=False)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
    # A device worker runs requests in its own threads; the worker sets OMP_NUM_THREADS for that.
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        options.intra_op_num_threads = int(threads)
    size = path.stat().st_size
    try:
        before = memory.snapshot(spec.device, meter)
        started = time.perf_counter()
        with guard.watching(spec.guard, spec.device, meter):
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        seconds = time.perf_counter() - started
        after = memory.snapshot(spec.device, meter)
    except ServingError:
        raise  # the load guard stopped it, and said why
    except Exception as exc:
        raise serving_error(exc, subject=f"loading {path.name}") from exc
    return OnnxLoaded(
        session=session,
        file=path.name,
        device=spec.device,
        tasks=frozenset({TENSORS}),
        measured_bytes=memory.load_cost(before, after, floor=size),
        load_seconds=seconds,
        weights_bytes=size,
        meter=meter,
    )


def _model_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise CorruptFile(f"{path} does not exist")
    graphs = sorted(path.glob("*.onnx"))
    named = [g for g in graphs if g.name == "model.onnx"]
    if named or len(graphs) == 1:
        return (named or graphs)[0]
    if not graphs:
        raise CorruptFile(f"{path.name} holds no .onnx file")
    raise BadInput(
        f"{path.name} holds {len(graphs)} .onnx files and none is model.onnx: register one of them"
    )


def _providers(device: str) -> list[Any]:
    if device.startswith("cuda") and _CUDA in ort.get_available_providers():
        index = int(device.partition(":")[2] or 0)
        return [(_CUDA, {"device_id": index}), _CPU]
    return [_CPU]


def _array(name: str, value: object, dtype: str) -> np.ndarray:
    """One input as an array of the graph's dtype, refusing values that would not survive the cast."""
    if isinstance(value, dict):
        given, shape, data = value.get("dtype", dtype), value.get("shape"), value.get("data")
        if given != dtype:
            raise BadInput(f"input {name!r} takes {dtype}, not {str(given)[:30]}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_RANK
            or any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape)
        ):
            raise BadInput(f"input {name!r}: shape must be a list of at most {MAX_RANK} whole numbers >= 0")
        count = math.prod(shape)
        if count > MAX_ELEMENTS:
            raise BadInput(f"input {name!r} holds {count:,} values, more than {MAX_ELEMENTS:,}")
        if not isinstance(data, list) or len(data) != count:
            got = len(data) if isinstance(data, list) else "no"
            raise BadInput(f"input {name!r}: shape {shape} holds {count:,} values but data has {got}")
        return _convert(name, data, dtype).reshape(shape)
    if isinstance(value, list):
        return _convert(name, value, dtype)
    raise BadInput(f"input {name!r} must be a nested list or an object with dtype, shape and data")


def _convert(name: str, data: list[Any], dtype: str) -> np.ndarray:
    try:
        raw = np.asarray(data)
    except ValueError:
        raise BadInput(f"input {name!r}: the nested lists are ragged, not a tensor") from None
    if raw.size > MAX_ELEMENTS:
        raise BadInput(f"input {name!r} holds {raw.size:,} values, more than {MAX_ELEMENTS:,}")
    if raw.size == 0:
        return raw.astype(dtype)
    want = np.dtype(dtype)
    fits = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[want.kind]
    if raw.dtype.kind not in fits:
        raise BadInput(f"input {name!r} takes {dtype}; its values are not all of that kind")
    if want.kind in "iu":
        limits = np.iinfo(want)
        if raw.min() < limits.min or raw.max() > limits.max:
            raise BadInput(f"input {name!r} has values outside the range of {dtype}")
    return raw.astype(want)


def _check_shape(name: str, shape: tuple[int, ...], dims: list[Any]) -> None:
    if len(shape) != len(dims):
        raise BadInput(f"input {name!r} is rank {len(dims)} {_show(dims)}; got shape {list(shape)}")
    for axis, (want, got) in enumerate(zip(dims, shape, strict=True)):
        if isinstance(want, int) and want >= 0 and want != got:
            raise BadInput(f"input {name!r}: dimension {axis} must be {want}, got {got} ({_show(dims)})")


def _show(dims: list[Any]) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in dims) + "]"


def _signature(meta: Any) -> dict[str, Any]:
    return {"name": meta.name, "dtype": DTYPES.get(meta.type, meta.type), "shape": _show(list(meta.shape))}
