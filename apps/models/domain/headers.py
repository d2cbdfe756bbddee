"""What reading a file's header finds, and the lines of a validation report: plain values that the
format readers (apps.models.formats) produce and the validation rules (apps.models.domain.validation)
judge."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from apps.core.domain.text import printable

# "skip": the check could not be made here, and its detail says why (not a problem).
Status = Literal["pass", "warn", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    """One line of a validation report: a named check, its outcome and why."""

    check: str
    status: Status
    detail: str
    file: str = ""

    def as_dict(self) -> dict[str, str]:
        """The form ModelVersion.validation_report stores; the detail, a sentence that may quote
        names from disk, with their control characters made visible. `file` stays the path as it is,
        the key that matches the version's file rows."""
        detail = printable(self.detail)
        return {"check": self.check, "status": self.status, "detail": detail, "file": self.file}


class Problems:
    """Counts a reader's problems per check, keeping the first of each to name in the report.

    A hostile file can repeat one fault a million times (a duplicated name, a bad offset); the
    report gets one line per check, the first problem plus how many more, not a million lines.
    """

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, check: str, detail: str) -> None:
        self.count[check] += 1
        self.first.setdefault(check, detail)

    def check(self, name: str, passed: str) -> Check:
        """The check's line: a pass saying `passed`, or a fail naming the first problem."""
        count = self.count[name]
        if not count:
            return Check(name, "pass", passed)
        more = f" (and {count - 1:,} more)" if count > 1 else ""
        return Check(name, "fail", self.first[name] + more)


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True, slots=True)
class Layout:
    """What a weights file's tensor names, shapes and dtypes say about the model, where they follow
    the usual schemes (apps.models.domain.params.layout): the tensors are not stored, this is."""

    blocks: int  # the highest block number in the names, plus one ("h.11.", "model.layers.31.", "blk.7.")
    output_head: bool  # an output projection stored apart from the embedding ("lm_head.weight")
    buffers: int  # elements of tensors that are buffers, not parameters (GPT-2's causal mask)
    # The token embeddings' widths (their last dimension: the model's hidden size), a few at most.
    widths: tuple[int, ...] = ()
    # How many values integer matrices (quantised weights) may hold beyond their element count;
    # None in a header stored before this was recorded.
    packed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "blocks": self.blocks,
            "output_head": self.output_head,
            "buffers": self.buffers,
            "widths": list(self.widths),
            "packed": self.packed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layout:
        """A stored layout; one stored before widths and packing were recorded has neither."""
        return cls(
            blocks=data["blocks"],
            output_head=data["output_head"],
            buffers=data["buffers"],
            widths=tuple(data.get("widths", ())),
            packed=data.get("packed"),
        )


@dataclass(frozen=True, slots=True)
class FileHeader:
    """What reading one file's header found; `format` is a FileFormat value."""

    format: str
    metadata: dict[str, Any]
    tensor_count: int
    params_count: int | None
    weights_bytes: int
    dtypes: dict[str, int]
    checks: tuple[Check, ...]
    # Files this one points at (weight shards, ONNX external data), relative to its folder.
    references: tuple[str, ...] = ()
    tensors: tuple[TensorInfo, ...] = ()
    # None where the names were not all seen (a header cut short, more tensors than are kept).
    layout: Layout | None = None

    @property
    def failed(self) -> bool:
        return any(check.status == "fail" for check in self.checks)
