"""A version's summary from its files' headers: format, kind, size, parameters, metadata and VRAM
estimate; and how a header is stored in, and read back from, ModelFile.header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from apps.models.domain import validation, vram
from apps.models.domain.formats import FileFormat, ModelFormat
from apps.models.domain.headers import Check, FileHeader, Layout
from apps.models.formats import hf
from apps.models.models import ModelVersion


def header_json(header: FileHeader) -> dict[str, Any]:
    """What ModelFile.header stores of a header (its tensors, possibly thousands, are left out;
    their layout, a few numbers, is kept)."""
    return {
        "format": header.format,
        "metadata": header.metadata,
        "tensor_count": header.tensor_count,
        "params_count": header.params_count,
        "weights_bytes": header.weights_bytes,
        "dtypes": header.dtypes,
        "checks": [check.as_dict() for check in header.checks],
        "references": list(header.references),
        "layout": header.layout.as_dict() if header.layout is not None else None,
    }


def header_from_json(data: dict[str, Any], fallback_format: str = FileFormat.OTHER) -> FileHeader:
    # Headers stored before layouts were recorded have none: the checks then allow for either.
    layout = data.get("layout")
    return FileHeader(
        format=data.get("format", fallback_format),
        metadata=data.get("metadata", {}),
        tensor_count=data.get("tensor_count", 0),
        params_count=data.get("params_count"),
        weights_bytes=data.get("weights_bytes", 0),
        dtypes=data.get("dtypes", {}),
        checks=tuple(Check(**check) for check in data.get("checks", [])),
        references=tuple(data.get("references", [])),
        layout=Layout.from_dict(layout) if isinstance(layout, dict) else None,
    )


def describe(version: ModelVersion, folder: str | None, rows: list[tuple[str, int, dict]]) -> None:
    """Set the version's format, kind, size, parameters, metadata and VRAM estimate from its files."""
    headers = {path: header_from_json(header) for path, _, header in rows}
    config: dict[str, Any] = {}
    kind = ""
    if folder is not None:
        config, _, kind = hf.read_folder(Path(folder), sorted(headers))
    summary = validation.summarise(headers, config=config)
    weights = [h for h in headers.values() if h.format == _weights_format(headers)]
    metadata: dict[str, Any] = {}
    for header in weights:  # the first shard's value wins where shards disagree
        metadata.update({k: v for k, v in header.metadata.items() if k not in metadata})
    metadata.update(config)
    metadata.update(summary["arch"])
    metadata.update(dtypes=summary["dtypes"], tensor_count=summary["tensor_count"])
    version.format = summary["format"] or version.format
    version.kind = kind or _kind(summary["format"], metadata)
    version.size_bytes = sum(size for _, size, _ in rows)
    version.params_count = summary["params_count"]
    version.metadata = metadata
    version.vram_estimate = vram.estimate(
        weights_bytes=summary["weights_bytes"],
        arch=summary["estimate_arch"],
        context=settings.MOC_VRAM_CONTEXT,
        batch=settings.MOC_VRAM_BATCH,
        overhead_share=settings.MOC_VRAM_OVERHEAD_SHARE,
        overhead_min=settings.MOC_VRAM_OVERHEAD_MIN_BYTES,
        untrusted=summary["untrusted"],
    )
    version.estimated_vram_bytes = version.vram_estimate["total"]


def _weights_format(headers: dict[str, FileHeader]) -> str | None:
    present = {header.format for header in headers.values()}
    return next((f.value for f in validation.WEIGHT_FORMATS if f.value in present), None)


# GGUF architectures that embed text rather than generate it.
_GGUF_ENCODERS = frozenset({"bert", "nomic-bert", "jina-bert-v2", "t5encoder"})


def _kind(model_format: str, metadata: dict[str, Any]) -> str:
    """What a loose weight file is, where no config says: ONNX graphs and GGUF language models."""
    if model_format == ModelFormat.ONNX:
        return "onnx-graph"
    architecture = metadata.get("architecture")
    if model_format == ModelFormat.GGUF and isinstance(architecture, str):
        return "embedding" if architecture in _GGUF_ENCODERS else "causal-lm"
    return ""
