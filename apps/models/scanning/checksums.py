"""File checksums (worker side): hashing a chunk of files queued by a scan, and how a scan cuts
the files it found new or changed into such chunks."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Sequence

from apps.core import dispatch
from apps.models import discovery, messages
from apps.models.models import ModelFile, ModelVersion
from apps.models.scanning.base import configured_roots

_CHECKSUM_CHUNK_FILES = 64
_CHECKSUM_CHUNK_BYTES = 2 << 30  # one task hashes about this much at most (one big file alone)
_READ_CHUNK = 1 << 20


def file_path(version: ModelVersion, file: ModelFile) -> str:
    """The absolute path of one of the version's files."""
    return os.path.normpath(os.path.join(discovery.version_base(version.path), file.path))


def sha256_of(path: str) -> str:
    """The file's sha256 (hex), read in 1 MiB chunks: what a scan records, and what a release's
    verification compares with the record. Raises OSError."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksum(*, file: ModelFile) -> bool:
    """Hash the file in 1 MiB chunks and record its sha256; False when it was current, refused,
    gone, or changed while being hashed (a later scan will queue it again)."""
    path = file_path(file.version, file)
    if not discovery.inside(path, configured_roots()):
        return False
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            return False
        current = discovery.fingerprint(before.st_size, before.st_mtime_ns, before.st_ino)
        if file.checksummed == current and file.sha256:
            return False
        digest = sha256_of(path)
        after = os.stat(path)
    except OSError:
        return False
    if discovery.fingerprint(after.st_size, after.st_mtime_ns, after.st_ino) != current:
        return False
    # Only for the file as the scan recorded it: a checksum must describe the header on record.
    updated = ModelFile.objects.filter(
        pk=file.pk, size_bytes=before.st_size, mtime_ns=before.st_mtime_ns, inode=before.st_ino
    ).update(sha256=digest, checksummed=current)
    return updated == 1


def files_checksum(*, file_ids: Sequence[int]) -> int:
    """Hash a chunk of files, then validate again each version whose files are now all hashed."""
    files = list(ModelFile.objects.filter(pk__in=file_ids).select_related("version"))
    hashed = sum(file_checksum(file=file) for file in files)
    versions = {file.version_id for file in files}
    stale = {
        version_id
        for version_id, size, mtime_ns, inode, checksummed in ModelFile.objects.filter(
            version_id__in=versions
        ).values_list("version_id", "size_bytes", "mtime_ns", "inode", "checksummed")
        if checksummed != discovery.fingerprint(size, mtime_ns or 0, inode or 0)
    }
    dispatch.send_many_on_commit(
        messages.REGISTRY_VALIDATE, [[version_id] for version_id in sorted(versions - stale)]
    )
    return hashed


def checksum_chunks(sizes: dict[int, int]) -> Iterator[list[int]]:
    """File ids (from id -> size) in chunks of one checksum task each."""
    chunk: list[int] = []
    total = 0
    for file_id, size in sorted(sizes.items()):
        if chunk and (len(chunk) >= _CHECKSUM_CHUNK_FILES or total + size > _CHECKSUM_CHUNK_BYTES):
            yield chunk
            chunk, total = [], 0
        chunk.append(file_id)
        total += size
    if chunk:
        yield chunk
