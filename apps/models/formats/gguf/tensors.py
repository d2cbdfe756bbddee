"""GGUF tensor infos checked: names unique, types known, shapes whole blocks, data packed in order.

The bookkeeping stays small at the million-tensor cap: name hashes rather than names,
offsets and sizes in flat arrays, and only the first infos kept whole.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter

from apps.models.domain.headers import Check, Problems, TensorInfo
from apps.models.formats.base import FormatError
from apps.models.formats.gguf.tables import GGML_TYPES
from apps.models.formats.gguf.values import SHOWN_STRING

# Tensor infos kept on the header for tests and validation, by count and by name bytes;
# the counts and checks cover them all.
KEPT_TENSORS = 10_000
_KEPT_NAME_BYTES = 1 << 20
INT64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1


class Tensors:
    """The tensor infos of one file: their problems per check, totals, and where their data lies."""

    def __init__(self) -> None:
        self.problems = Problems()
        self.kept: list[TensorInfo] = []
        self.kept_name_bytes = 0
        self.params = 0
        self.weights = 0
        self.dtypes: Counter[str] = Counter()
        # Hashes of the names, not the names: uniqueness over a million tensors in little memory.
        self.names: set[int] = set()
        # Offsets and sizes of every tensor, compact: 16 bytes a tensor even at the cap.
        self.offsets = array("Q")
        self.sizes = array("Q")
        self.sizes_known = True

    def add(self, name: str, dims: tuple[int, ...], ggml_type: int, offset: int) -> None:
        """Check one tensor info and book its size, offset and name."""
        shown = repr(name[:SHOWN_STRING])
        if hash(name) in self.names:
            self.problems.add("tensor_names_unique", f"tensor name {shown} appears twice")
        self.names.add(hash(name))
        known = ggml_type in GGML_TYPES
        if not known:
            self.problems.add("dtype_known", f"tensor {shown} has unknown ggml type {ggml_type}")
        elements = 0
        if any(d < 0 for d in dims):
            self.problems.add("tensor_shapes", f"tensor {shown} has a negative dimension {dims}")
            known = False
        elif math.prod(dims) > INT64_MAX:
            self.problems.add("tensor_shapes", f"tensor {shown} has more elements than fit in 64 bits")
            known = False
        else:
            elements = math.prod(dims)
        nbytes = 0
        if known:
            type_name, block, block_bytes = GGML_TYPES[ggml_type]
            if dims and dims[0] % block:
                self.problems.add(
                    "tensor_shapes",
                    f"tensor {shown}: innermost dimension {dims[0]:,} is not a multiple of the "
                    f"{type_name} block of {block}",
                )
                known = False
            else:
                nbytes = elements // block * block_bytes
                self.dtypes[type_name] += 1
        self.params += elements
        self.weights += nbytes
        self.sizes_known &= known
        # A size past 2^64 cannot fit any file; clipped, it still fails offsets_inside_file.
        self.offsets.append(offset)
        self.sizes.append(min(nbytes, _U64_MAX))
        self.kept_name_bytes += len(name)
        if len(self.kept) < KEPT_TENSORS and self.kept_name_bytes <= _KEPT_NAME_BYTES:
            dtype = GGML_TYPES[ggml_type][0] if ggml_type in GGML_TYPES else f"type_{ggml_type}"
            # Row-major like the other formats' shapes; GGUF stores the innermost dimension first.
            self.kept.append(TensorInfo(name=name, dtype=dtype, shape=dims[::-1], nbytes=nbytes))

    def info_checks(self, tensor_count: int) -> list[Check]:
        return [
            self.problems.check("tensor_names_unique", f"{tensor_count:,} distinct names"),
            self.problems.check("dtype_known", f"types: {_counted(self.dtypes)}"),
            self.problems.check("tensor_shapes", "dimensions non-negative and whole blocks of their type"),
        ]

    def offset_checks(self, infos_end: int, file_size: int, align: int) -> list[Check]:
        """Tensor data must lie inside the file, each tensor where the one before it ends, padded.

        That contiguity is what llama.cpp's loader demands; a gap or an overlap is refused.
        `infos_end` is where the tensor infos end: the data starts at the next alignment.
        """
        data_start = -(-infos_end // align) * align
        data_bytes = file_size - data_start
        if data_bytes < 0:
            raise FormatError(
                f"tensor data would start at byte {data_start:,}, past the end of the file",
                "offsets_inside_file",
            )
        expected = 0
        for index, (offset, nbytes) in enumerate(zip(self.offsets, self.sizes, strict=True)):
            where = f"tensor #{index} at data offset {offset:,}"
            if offset + nbytes > data_bytes:
                self.problems.add(
                    "offsets_inside_file",
                    f"{where} ends at data byte {offset + nbytes:,}, past the {data_bytes:,} bytes "
                    "of data the file holds",
                )
            if offset % align:
                self.problems.add("offsets_contiguous", f"{where} is not aligned to {align}")
            elif offset < expected:
                self.problems.add("offsets_contiguous", f"{where} overlaps the tensor before it")
            elif offset > expected:
                self.problems.add(
                    "offsets_contiguous", f"{where} leaves a gap of {offset - expected:,} bytes"
                )
            expected = max(expected, offset + -(-nbytes // align) * align)
        checks = [
            self.problems.check(
                "offsets_inside_file", f"tensor data within the file's {data_bytes:,} data bytes"
            )
        ]
        if self.sizes_known:
            checks.append(self.problems.check("offsets_contiguous", "tensors packed in order, aligned"))
        else:
            checks.append(Check("offsets_contiguous", "warn", "not checked: some tensor sizes are unknown"))
        return checks


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{name} × {count:,}" for name, count in counts.most_common()) or "none"
