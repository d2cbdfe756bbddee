"""A model root of small, valid files of mixed formats, for bench/registry_scan.py.

Built with the writers the reader tests use (tests/models/formats/corpus*.py), so the bench
scans the same kind of files the tests check. Every unit (one file, or one folder of files)
has a unique name, so the scan names each model after it without de-duplicating, and units
sit 100 to a folder, as a tidy model store would keep them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.models.formats import corpus
from tests.models.formats import corpus_gguf_onnx as gguf_onnx

UNITS_PER_FOLDER = 100


@dataclass
class Written:
    """What write_root wrote: files per kind, units per kind, and the weight files per format."""

    files: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    by_format: dict[str, list[Path]] = field(default_factory=dict)
    total_bytes: int = 0

    @property
    def total(self) -> int:
        return sum(self.files.values())


@dataclass(frozen=True)
class Kind:
    """One kind of unit: its share of all files, how many files one unit holds, and its writer."""

    name: str
    share: float
    files_per_unit: int
    write: Callable[[Path, str], list[tuple[str, Path]]]  # (folder, unit name) -> (format, path)


def _contents() -> dict[str, bytes]:
    """Each single-file kind's bytes, made once: writing 10,000 files should cost only the writes."""
    return {
        "safetensors": corpus.safetensors_bytes(corpus.SMALL_TENSORS, metadata={"format": "pt"}),
        "gguf": gguf_onnx.tiny_gguf(),
        "onnx": gguf_onnx.tiny_onnx_model().SerializeToString(),
        "pickle": corpus.torch_like_pickle(),
    }


def kinds() -> list[Kind]:
    """The mix: safetensors files fill whatever the other kinds leave of the total."""
    content = _contents()

    def single(fmt: str, suffix: str) -> Callable[[Path, str], list[tuple[str, Path]]]:
        return lambda folder, name: [(fmt, corpus.write(folder, f"{name}{suffix}", content[fmt]))]

    def hf_folder(folder: Path, name: str) -> list[tuple[str, Path]]:
        corpus.write_hf_folder(folder / name)
        shards = sorted((folder / name).glob("*.safetensors"))
        return [("safetensors", p) for p in shards] + [
            ("shard index", folder / name / "model.safetensors.index.json")
        ]

    def onnx_external(folder: Path, name: str) -> list[tuple[str, Path]]:
        return [("onnx", gguf_onnx.write_external_onnx(folder / name))]

    def torch_pickle(folder: Path, name: str) -> list[tuple[str, Path]]:
        # Both layouts torch.save has written: the zip archive (1.6+) and the legacy stream.
        if int(name.rsplit("-", 1)[1]) % 2:
            return [("pickle", corpus.legacy_torch_file(folder, f"{name}.bin", content["pickle"]))]
        return [("pickle", corpus.torch_zip_file(folder, f"{name}.pt", content["pickle"]))]

    return [
        Kind("hf", 0.35, 7, hf_folder),  # config, generation config, 2 tokenizer files, 2 shards, index
        Kind("gguf", 0.15, 1, single("gguf", ".gguf")),
        Kind("onnx", 0.06, 1, single("onnx", ".onnx")),
        Kind("onnx-external", 0.02, 2, onnx_external),  # model.onnx + weights.bin
        Kind("pickle", 0.02, 1, torch_pickle),
        Kind("safetensors", 0.0, 1, single("safetensors", ".safetensors")),
    ]


def plan(total: int) -> list[tuple[Kind, int]]:
    """Units per kind so that the files add up to exactly `total`."""
    mix = kinds()
    units = [(kind, int(total * kind.share) // kind.files_per_unit) for kind in mix[:-1]]
    rest = total - sum(kind.files_per_unit * count for kind, count in units)
    return [*units, (mix[-1], rest)]


def write_root(root: Path, total: int) -> Written:
    """Write `total` files under `root` in the planned mix."""
    written = Written()
    for kind, count in plan(total):
        for number in range(count):
            folder = root / kind.name / f"{number // UNITS_PER_FOLDER:03d}"
            for fmt, path in kind.write(folder, f"{kind.name}-{number:06d}"):
                written.by_format.setdefault(fmt, []).append(path)
        written.files[kind.name] = _files_under(root / kind.name)
        written.units[kind.name] = count
    written.total_bytes = sum(path.stat().st_size for path in root.rglob("*") if path.is_file())
    return written


def _files_under(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder))
