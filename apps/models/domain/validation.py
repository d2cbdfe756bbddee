"""A model version's validation: its files' checks, its folder's, checksums, path safety, and
whether its config describes its weights (apps.models.domain.params).

Pure: the scan reads the headers (apps.models.formats) and hashes the files, then passes what
it found here. The report is what ModelVersion.validation_report stores, one line per check;
a version with any `fail` line is invalid, and `problems` says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from apps.core.domain.text import counted, printable
from apps.models.domain import params
from apps.models.domain.formats import FileFormat, ModelFormat
from apps.models.domain.headers import Check, FileHeader

# When a folder ships the same weights twice (safetensors beside pytorch_model.bin, as many
# Hugging Face repositories do), the first format here is the one counted and served.
WEIGHT_FORMATS = (FileFormat.SAFETENSORS, FileFormat.GGUF, FileFormat.ONNX, FileFormat.PYTORCH)
_HF_CONFIGS = frozenset({"config.json", "adapter_config.json"})
# Formats whose header lists tensors; one that lists none holds no weights to load.
_TENSOR_FORMATS = frozenset({FileFormat.SAFETENSORS, FileFormat.GGUF})
_NAMED = 5

# Architecture numbers under the names config.json uses, and what GGUF metadata (as the GGUF
# reader names it) calls the same thing; vram.estimate reads the config.json names.
ARCH_KEYS: dict[str, tuple[str, ...]] = {
    "architectures": ("architectures",),
    "model_type": ("model_type", "architecture"),
    "num_hidden_layers": ("num_hidden_layers", "block_count"),
    "hidden_size": ("hidden_size", "embedding_length"),
    "num_attention_heads": ("num_attention_heads", "head_count"),
    "num_key_value_heads": ("num_key_value_heads", "head_count_kv"),
    "head_dim": ("head_dim", "key_length"),
    "intermediate_size": ("intermediate_size", "feed_forward_length"),
    "context_length": ("context_length",),
    "vocab_size": ("vocab_size",),
    # What params.config_check needs beyond the sizes: a token embedding narrower than the hidden
    # size (ALBERT, OPT-350m), experts, biases.
    "embedding_size": ("embedding_size",),
    "num_local_experts": ("num_local_experts", "expert_count"),
    "attention_bias": ("attention_bias",),
    "mlp_bias": ("mlp_bias",),
}


def version_report(
    *,
    files: Mapping[str, FileHeader],
    folder_checks: Iterable[Check] = (),
    checksums: Mapping[str, str | None],
    escaped: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
) -> list[dict[str, str]]:
    """Every check on the version, as report lines; `files` and `checksums` are keyed by relative path.

    `config` is what hf.read_folder found in the version's folder, checked against the weights.
    """
    lines = [_located(check, rel).as_dict() for rel in sorted(files) for check in files[rel].checks]
    lines += [
        _tensors_present(header, rel).as_dict()
        for rel, header in sorted(files.items())
        if header.format in _TENSOR_FORMATS and not header.failed
    ]
    lines += [check.as_dict() for check in folder_checks]
    if (config_check := summarise(files, config=config)["config_check"]) is not None:
        lines.append(config_check.as_dict())
    lines += [
        _references(rel, header, files).as_dict()
        for rel, header in sorted(files.items())
        if header.references
    ]
    lines.append(_weights_present(files).as_dict())
    if files:
        lines.append(_checksums(files, checksums).as_dict())
    lines += [
        Check("inside_roots", "fail", "resolves outside the model roots; refused, not read", rel).as_dict()
        for rel in escaped
    ]
    return lines


def problems(report: Iterable[Mapping[str, str]]) -> list[str]:
    """The report's fail lines as sentences, for ModelVersion.validation_error."""
    return [
        f"{printable(line['file'])}: {line['check']}: {line['detail']}"
        if line.get("file")
        else f"{line['check']}: {line['detail']}"
        for line in report
        if line.get("status") == "fail"
    ]


def summarise(files: Mapping[str, FileHeader], *, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The version's format, params, weights bytes, dtypes and architecture, from its headers.

    Only the weights of the preferred format present are counted (see WEIGHT_FORMATS).
    `config` is what hf.read_folder found; its numbers win over a GGUF file's metadata.
    `format` is a ModelFormat value, or "" when the version holds no weights.
    `config_check` says whether the architecture describes the weights (None when none is stated);
    `estimate_arch` is what of it the VRAM estimate may use (params.Comparison.trusted), and
    `untrusted`, when that is nothing, why ("" otherwise).
    """
    config = config or {}
    weights_format = next((f for f in WEIGHT_FORMATS if any(h.format == f for h in files.values())), None)
    counted = [h for h in files.values() if weights_format is not None and h.format == weights_format]
    counts = [h.params_count for h in counted if h.params_count is not None]
    dtypes: dict[str, int] = {}
    for header in counted:
        for dtype, count in header.dtypes.items():
            dtypes[dtype] = dtypes.get(dtype, 0) + count
    arch = _arch([*(h.metadata for h in counted if h.format == FileFormat.GGUF), config])
    compared = _config_check(arch, config, counted, counts, weights_format) if counted and arch else None
    estimate_arch: dict[str, Any] | None = arch
    untrusted = ""
    if compared is not None and compared.trusted is None:
        estimate_arch = None
        untrusted = (
            f"the architecture does not describe the weights ({params.CHECK} failed)"
            if compared.check.status == "fail"
            else f"the weights do not confirm the architecture's sizes ({params.CHECK} skipped)"
        )
    elif compared is not None:
        estimate_arch = compared.trusted
    return {
        "format": _model_format(weights_format, files),
        "params_count": sum(counts) if counts else None,
        "weights_bytes": sum(h.weights_bytes for h in counted),
        "tensor_count": sum(h.tensor_count for h in counted),
        "dtypes": dtypes,
        "weights_files": len(counted),
        "arch": arch,
        "config_check": compared.check if compared is not None else None,
        "estimate_arch": estimate_arch,
        "untrusted": untrusted,
    }


def _config_check(
    arch: Mapping[str, Any],
    config: Mapping[str, Any],
    counted: Sequence[FileHeader],
    counts: Sequence[int],
    weights_format: FileFormat | None,
) -> params.Comparison:
    if weights_format == FileFormat.ONNX:
        detail = "not compared: an ONNX graph's initializers are what its exporter kept, not the checkpoint's"
        return params.Comparison(Check(params.CHECK, "skip", detail), None)
    # Every counted file must have a count: a part of the weights is not the weights.
    held = sum(counts) if len(counts) == len(counted) else None
    layout = params.combine([h.layout for h in counted])
    values = held
    # GGUF counts values before quantisation; quantised safetensors store packed ones.
    if held is not None and weights_format == FileFormat.SAFETENSORS:
        values = params.most_values(held, layout, (dtype for h in counted for dtype in h.dtypes))
    from_config = any(name in config for name in ARCH_KEYS)
    return params.config_check(
        arch,
        source="config.json" if from_config else "the GGUF metadata",
        weights_params=held,
        layout=layout,
        values=values,
        # transformers fills in what config.json leaves out; llama.cpp has no defaults for GGUF's sizes.
        defaults=from_config,
    )


def _located(check: Check, rel: str) -> Check:
    return check if check.file else Check(check.check, check.status, check.detail, rel)


def _references(rel: str, header: FileHeader, files: Mapping[str, FileHeader]) -> Check:
    """A file's shards or external data must be files of this same version."""
    folder = PurePosixPath(rel).parent
    missing = [ref for ref in header.references if str(folder / ref) not in files]
    if missing:
        return Check(
            "references_present", "fail", f"referenced but not in the version: {_names(missing)}", rel
        )
    return Check("references_present", "pass", f"{len(header.references)} referenced files present", rel)


def _tensors_present(header: FileHeader, rel: str) -> Check:
    if not header.tensor_count:
        return Check("tensors_present", "fail", "the file holds no tensors: no weights to load", rel)
    return Check("tensors_present", "pass", counted(header.tensor_count, "tensor"), rel)


def _weights_present(files: Mapping[str, FileHeader]) -> Check:
    weights = [rel for rel, h in files.items() if h.format in WEIGHT_FORMATS]
    if not weights:
        return Check(
            "weights_present", "fail", "no weights file (.safetensors, .gguf, .onnx or a pytorch file)"
        )
    return Check("weights_present", "pass", counted(len(weights), "weights file"))


def _checksums(files: Mapping[str, FileHeader], checksums: Mapping[str, str | None]) -> Check:
    pending = sorted(rel for rel in files if not checksums.get(rel))
    if pending:
        return Check(
            "checksum", "warn", f"{len(pending)} of {len(files)} files not hashed yet: {_names(pending)}"
        )
    return Check("checksum", "pass", f"sha256 recorded for {counted(len(files), 'file')}")


def _model_format(weights_format: FileFormat | None, files: Mapping[str, FileHeader]) -> str:
    if weights_format is None:
        return ""
    has_config = any(PurePosixPath(rel).name in _HF_CONFIGS for rel in files)
    if has_config and weights_format in (FileFormat.SAFETENSORS, FileFormat.PYTORCH):
        return ModelFormat.HF.value
    return ModelFormat(weights_format.value).value


def _arch(sources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The architecture numbers under config.json's names; later sources win."""
    arch: dict[str, Any] = {}
    for source in sources:
        for name, aliases in ARCH_KEYS.items():
            value = next((source[a] for a in aliases if a in source), None)
            if value is not None:
                arch[name] = value
    return arch


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_NAMED])
    return shown + (f" and {len(items) - _NAMED} more" if len(items) > _NAMED else "")
