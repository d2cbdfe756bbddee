"""PyTorch pickle files (.bin .pt .pth .ckpt): scanned for dangerous imports, never unpickled.

Unpickling runs whatever callables the file names, so nothing here calls pickle.load or
torch.load. picklescan disassembles the opcodes instead and lists the globals the pickle would
import. A clean scan is only advisory (scanners miss hostile files), so the best a pickle file
earns is a `warn`: only a conversion to safetensors may load it.

Every stream picklescan reads goes through a reader with a byte and call budget, so a
decompression bomb or millions of tiny opcodes cannot exhaust memory; going over the budget
refuses the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any

from picklescan import scanner

from apps.models.domain.formats import FileFormat
from apps.models.domain.headers import Check, FileHeader
from apps.models.formats.base import PICKLE_PROTOCOLS, ZIP_MAGIC

# Per pickle stream. torch.save writes about 125 bytes, 32 opcodes and 80 reads per tensor, so
# these allow some 12,000 tensors in one file. pickletools reads at least once per opcode, so
# the read cap also caps the opcode list picklescan builds in memory (about 100 MB).
MAX_SCAN_BYTES = 32 * 1024 * 1024
MAX_SCAN_READS = 1_000_000
MAX_ZIP_MEMBERS = 100_000
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dat", ".data")
_GLOBALS_KEPT = 50
CLEAN = "pickle-based: only a conversion to safetensors may use it"
TOO_LARGE = "a pickle stream is larger than the scan allows; refused unscanned"


class _Exhausted(Exception):
    """The stream asked for more than the scan's budget."""


class _BudgetReader:
    """A read-only view of a stream that refuses to hand out more than the scan's budget."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.consumed = 0
        self.calls = 0
        self.exhausted = False

    def read(self, size: int | None = -1) -> bytes:
        left = self._spend(size)
        return self._count(self._raw.read(left + 1 if size is None or size < 0 else size))

    def readline(self, size: int | None = -1) -> bytes:
        left = self._spend(size)
        return self._count(self._raw.readline(left + 1 if size is None or size < 0 else size))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def _spend(self, size: int | None) -> int:
        self.calls += 1
        left = MAX_SCAN_BYTES - self.consumed
        if self.calls > MAX_SCAN_READS or (size is not None and size > left):
            self._exhaust()
        return left

    def _count(self, data: bytes) -> bytes:
        self.consumed += len(data)
        if self.consumed > MAX_SCAN_BYTES:
            self._exhaust()
        return data

    def _exhaust(self) -> None:
        # Remembered, because picklescan treats any error inside a stream as its end.
        self.exhausted = True
        raise _Exhausted("scan budget exceeded")


def read(path: Path) -> FileHeader:
    """Scan one pickle-based file; a `pickle_scan` check says whether it would run code when loaded."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        is_zip = handle.read(4) == ZIP_MAGIC
        handle.seek(0)
        try:
            if is_zip:
                result, readers, weights_bytes = _scan_zip(handle, path.name)
            else:
                result, readers = _scan_stream(handle, path.name, path.suffix.lower())
                weights_bytes = size
        except _Exhausted:
            result, readers, weights_bytes, failure = None, [], size, TOO_LARGE
        except Exception as error:  # a hostile file must cost a refusal, not a crashed scan
            result, readers, weights_bytes = None, [], size
            failure = f"the file could not be scanned ({type(error).__name__}); refused"
        else:
            failure = ""

    names = sorted({f"{g.module}.{g.name}"[:120] for g in result.globals}) if result else []
    metadata: dict[str, Any] = {"pickle": True, "container": "zip" if is_zip else "legacy"}
    if names:
        metadata["globals"] = names[:_GLOBALS_KEPT]
    return FileHeader(
        format=FileFormat.PYTORCH.value,
        metadata=metadata,
        tensor_count=0,
        params_count=None,
        weights_bytes=weights_bytes,
        dtypes={},
        checks=(_verdict(result, readers, failure),),
    )


def _verdict(result: scanner.ScanResult | None, readers: list[_BudgetReader], failure: str) -> Check:
    if result is None:
        return Check("pickle_scan", "fail", failure)
    dangerous = sorted(
        {f"{g.module}.{g.name}" for g in result.globals if g.safety is scanner.SafetyLevel.Dangerous}
    )
    if dangerous:
        shown = ", ".join(d[:80] for d in dangerous[:5])
        return Check("pickle_scan", "fail", f"dangerous imports: {shown}; loading it would run code")
    if any(reader.exhausted for reader in readers):
        return Check("pickle_scan", "fail", TOO_LARGE)
    if result.scan_err:
        return Check("pickle_scan", "fail", "a pickle stream could not be fully parsed; refused")
    unknown = sorted(
        {f"{g.module}.{g.name}" for g in result.globals if g.safety is scanner.SafetyLevel.Suspicious}
    )
    if unknown:
        shown = ", ".join(u[:80] for u in unknown[:5])
        return Check("pickle_scan", "warn", f"{CLEAN}; imports outside the known-safe list: {shown}")
    return Check("pickle_scan", "warn", CLEAN)


def _scan_stream(
    handle: IO[bytes], file_id: str, suffix: str
) -> tuple[scanner.ScanResult, list[_BudgetReader]]:
    reader = _BudgetReader(handle)
    if suffix in (".bin", ".pt", ".pth", ".ckpt"):
        try:
            # The legacy torch.save layout: a magic-number pickle, then a few more pickles.
            return scanner.scan_pytorch(reader, file_id), [reader]
        except scanner.InvalidMagicError:
            reader.seek(0)
    return scanner.scan_pickle_bytes(reader, file_id), [reader]


def _scan_zip(handle: IO[bytes], file_id: str) -> tuple[scanner.ScanResult, list[_BudgetReader], int]:
    """Scan each pickle member of a torch.save zip; also sum its tensor storages (archive/data/N)."""
    result = scanner.ScanResult([])
    readers: list[_BudgetReader] = []
    weights_bytes = 0
    with zipfile.ZipFile(handle) as archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise ValueError(f"{len(members)} zip members")
        for member in members:
            parts = PurePosixPath(member.filename).parts
            if len(parts) >= 2 and parts[-2] == "data" and parts[-1].isdigit():
                weights_bytes += member.file_size
            if member.is_dir() or not _is_pickle(archive, member):
                continue
            with archive.open(member) as stream:
                reader = _BudgetReader(stream)
                readers.append(reader)
                result.merge(scanner.scan_pickle_bytes(reader, f"{file_id}:{member.filename}"))
    return result, readers, weights_bytes


def _is_pickle(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bool:
    if member.filename.lower().endswith(_PICKLE_SUFFIXES):
        return True
    with archive.open(member) as stream:
        return stream.read(2) in PICKLE_PROTOCOLS
