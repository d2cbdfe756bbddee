"""Read an ONNX file's header: walk the model, then turn what the walk found into checks.

A walk cut short by a fault still reports what it found: the fault as a fail check, and the
tensor problems seen before it, but no pass for tensors it never reached.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps.models.domain.formats import FileFormat
from apps.models.domain.headers import Check, FileHeader
from apps.models.formats.base import FormatError
from apps.models.formats.onnx.model import Walker
from apps.models.formats.onnx.tensors import INT64_MAX
from apps.models.formats.onnx.wire import Source


def read(path: Path, *, roots: Sequence[Path]) -> FileHeader:
    """Read an ONNX file's header; a broken or hostile file gives fail checks, never an exception."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            walker = Walker(Source(handle, os.fstat(handle.fileno()).st_size), path.parent, roots)
            return _walk(walker)
    except OSError as error:
        return FileHeader(
            format=FileFormat.ONNX.value,
            metadata={},
            tensor_count=0,
            params_count=None,
            weights_bytes=0,
            dtypes={},
            checks=(Check("readable", "fail", f"could not read the file: {error.strerror or error}"),),
        )


def _walk(walker: Walker) -> FileHeader:
    tensors = walker.tensors
    checks: list[Check] = []
    complete = False
    try:
        walker.model(walker.src.size)
        complete = True
        checks.append(
            Check(
                "onnx_structure",
                "pass",
                f"well-formed protobuf: {walker.node_count:,} nodes, {tensors.initializers:,} initializers",
            )
        )
        checks.extend(_model_checks(walker))
    except FormatError as error:
        checks.append(Check(error.check, "fail", error.detail))
    # After a walk cut short only the problems found count: a pass would vouch for tensors never seen.
    checks.extend(c for c in tensors.checks() if complete or c.status == "fail")
    return FileHeader(
        format=FileFormat.ONNX.value,
        metadata=_summary(walker),
        tensor_count=tensors.initializers,
        # Clipped so a hostile header's sums (already failed) still fit a 64-bit column.
        params_count=min(tensors.params, INT64_MAX) if complete else None,
        weights_bytes=min(tensors.weights, INT64_MAX),
        dtypes=dict(tensors.dtypes),
        checks=tuple(checks),
        references=tuple(tensors.references),
        tensors=tuple(tensors.kept),
    )


def _model_checks(walker: Walker) -> list[Check]:
    if walker.ir_version is None:
        return [Check("onnx_model", "fail", "no ir_version: not an ONNX model")]
    if not walker.graph_seen:
        return [Check("onnx_model", "fail", "the model has no graph")]
    checks = [Check("onnx_model", "pass", f"IR version {walker.ir_version}")]
    if walker.opsets:
        shown = ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in walker.opsets.items())
        checks.append(Check("onnx_opset", "pass", shown))
    elif walker.ir_version >= 3:
        checks.append(Check("onnx_opset", "fail", "no opset_import: the operators' versions are unknown"))
    return checks


def _summary(walker: Walker) -> dict[str, Any]:
    if walker.ir_version is None:
        return {}
    tensors = walker.tensors
    inputs = [value for value in walker.inputs if hash(value["name"]) not in tensors.names]
    summary: dict[str, Any] = {
        "ir_version": walker.ir_version,
        "opsets": dict(walker.opsets),
        "producer": f"{walker.producer} {walker.producer_version}".strip(),
        "graph_name": walker.graph_name,
        "inputs": inputs,
        "outputs": list(walker.outputs),
        "node_count": walker.node_count,
        "initializer_count": tensors.initializers,
        "initializer_bytes": tensors.weights,
    }
    if walker.input_count > len(walker.inputs) or walker.output_count > len(walker.outputs):
        summary["inputs_total"], summary["outputs_total"] = walker.input_count, walker.output_count
    if tensors.references:
        summary["external_data"] = list(tensors.references)
    return summary
