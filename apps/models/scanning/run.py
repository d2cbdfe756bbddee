"""The scan itself (worker side): walk the roots under the lock, compare what was found with the
tables in batches, read the headers of new and changed files, and queue checksums and
validations when it commits."""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from django.db import transaction
from django.utils import timezone
from redis.lock import Lock

from apps.core import dispatch, redis_clients
from apps.core.transitions import transition
from apps.models import discovery, messages
from apps.models.discovery import Candidate
from apps.models.domain import naming
from apps.models.domain.states import SCAN, ScanState, ValidationState
from apps.models.models import ModelFile, ModelVersion, RegisteredModel, ScanRun
from apps.models.scanning.base import QUEUED_RESEND_AFTER, scan_fail, scan_lock
from apps.models.scanning.checksums import checksum_chunks
from apps.models.scanning.describe import describe
from apps.models.scanning.lineage import adapters_link
from apps.models.scanning.reading import CandidateReader, KnownFile, new_version

_BATCH_FILES = 500  # files per transaction, and between two progress saves


def scan_run(*, scan: ScanRun) -> ScanRun:
    """Run a queued scan. One scan walks at a time; a duplicate or late delivery does nothing."""
    lock = scan_lock(redis_clients.redis_client())
    if not lock.acquire():
        scan.refresh_from_db()
        if scan.state == ScanState.QUEUED:
            scan_fail(scan, "another scan was walking the roots")
        return scan
    try:
        scan.refresh_from_db()
        if scan.state == ScanState.QUEUED:
            transition(scan, ScanState.RUNNING, machine=SCAN, started_at=timezone.now())
        elif scan.state != ScanState.RUNNING:  # finished or failed already
            return scan
        # RUNNING here means the worker that had it died: the scan is simply run again.
        try:
            _Scanner(scan, lock).run()
        except Exception as error:
            scan_fail(scan, f"{type(error).__name__}: {error}")
            raise
    finally:
        if lock.owned():
            lock.release()
    scan.refresh_from_db()
    return scan


class _Scanner(CandidateReader):
    """One scan's state: what the tables held, what was found, and the counts (reading.py reads
    each candidate's files)."""

    def __init__(self, scan: ScanRun, lock: Lock) -> None:
        super().__init__(discovery.resolve_roots(scan.roots))
        self.scan, self.lock = scan, lock
        self.seen = 0
        self.total = 1
        self.touched: set[int] = set()

    def run(self) -> None:
        found = discovery.walk(self.scan.roots)
        for root in found.missing_roots:
            self.error(root, "the model root is missing or not a folder")
        for refusal in (*found.refused, *found.unreadable):
            self.counts["failed"] += 1
            self.error(refusal.path, refusal.reason)
        self._load(found.roots)
        candidates = self._without_onnx_data(found.candidates)
        self.total = max(sum(len(candidate.files) for candidate in candidates), 1)
        for batch in _batches(candidates):
            with transaction.atomic():
                self._apply(batch)
            self._progress()
            self.lock.reacquire()
        skipped = [refusal.path for refusal in found.unreadable]
        with transaction.atomic():
            self._forget_vanished(skipped)
            adapters_link(roots=self.roots)
            self._finish(failed=bool(found.missing_roots))

    def _load(self, roots: Sequence[str]) -> None:
        """Every known version and file under the walked roots, in two queries."""
        self.versions = {
            (root, path): pk
            for pk, root, path in ModelVersion.objects.filter(root__in=roots).values_list(
                "pk", "root", "path"
            )
        }
        self.files: dict[int, dict[str, KnownFile]] = defaultdict(dict)
        rows = ModelFile.objects.filter(version__root__in=roots).values_list(
            "pk", "version_id", "path", "size_bytes", "mtime_ns", "inode", "checksummed"
        )
        for pk, version_id, path, size, mtime_ns, inode, checksummed in rows.iterator(chunk_size=5000):
            fingerprint = discovery.fingerprint(size, mtime_ns or 0, inode or 0)
            self.files[version_id][path] = KnownFile(pk, path, fingerprint, checksummed, size)
        self.names = {name.lower() for name in RegisteredModel.objects.values_list("name", flat=True)}

    def _apply(self, batch: list[Candidate]) -> None:
        new: list[ModelFile] = []
        changed: list[ModelFile] = []
        gone: list[int] = []
        created: list[tuple[Candidate, ModelVersion, list[ModelFile]]] = []
        for candidate in batch:
            version_id = self.versions.get((candidate.root, candidate.abspath))
            known = self.files.pop(version_id, {}) if version_id is not None else {}
            first_new = len(new)
            files = self.read_candidate(candidate, version_id, known, new, changed)
            removed = [row.pk for path, row in known.items() if path not in files]
            if version_id is None:
                version = new_version(candidate, new[first_new:], created_by=self.scan.requested_by)
                created.append((candidate, version, new[first_new:]))
            elif removed:
                self.touched.add(version_id)
                gone += removed
            self.seen += len(files)
        self._create_versions(created)
        if gone:
            self.counts["removed"] += len(gone)
            ModelFile.objects.filter(pk__in=gone).delete()
        ModelFile.objects.bulk_create(new)
        ModelFile.objects.bulk_update(
            changed, ["size_bytes", "mtime", "mtime_ns", "inode", "format", "header", "sha256", "checksummed"]
        )
        for row in (*new, *changed):
            self.to_hash[row.pk] = row.size_bytes
            self.touched.add(row.version_id)
        self._summarise(batch, exclude={version.pk for _, version, _ in created})

    def _without_onnx_data(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates less the files an ONNX model names as its external data: those join its
        version (as references do), they are not versions of their own. A file that is a model of
        its own (a safetensors, GGUF or ONNX file, a pickle) is never among them: the ONNX reader
        refuses such a location (formats.base.model_file), and the ONNX fails for it."""
        claimed: set[str] = set()
        for onnx in discovery.onnx_to_read(candidates):
            claimed.update(os.path.normpath(os.path.join(onnx.base, ref)) for ref in self._onnx_data(onnx))
        return [c for c in candidates if c.folder or c.abspath not in claimed]

    def _onnx_data(self, onnx: Candidate) -> Iterable[str]:
        """The files an ONNX candidate's model keeps its data in: as the last scan attached them if it
        is unchanged, else as its header says (read now, once: its batch takes it from read_ahead)."""
        found = onnx.files[0]
        version_id = self.versions.get((onnx.root, onnx.abspath))
        known = self.files.get(version_id, {}) if version_id is not None else {}
        row = known.get(found.path)
        if row is not None and row.fingerprint == found.fingerprint:
            return [path for path in known if path != found.path]
        header = self.read_now(onnx.base, found)
        # The tensors are not stored, and thousands of read-ahead headers must stay small.
        self.read_ahead[onnx.abspath] = dataclasses.replace(header, tensors=())
        return header.references

    def _create_versions(self, created: list[tuple[Candidate, ModelVersion, list[ModelFile]]]) -> None:
        """Insert new models and versions in bulk and point their files at them."""
        if not created:
            return
        models = [RegisteredModel(name=self._unique_name(candidate.name)) for candidate, _, _ in created]
        RegisteredModel.objects.bulk_create(models)
        for model, (_, version, _) in zip(models, created, strict=True):
            version.model = model
        ModelVersion.objects.bulk_create([version for _, version, _ in created])
        for candidate, version, files in created:
            self.versions[(candidate.root, candidate.abspath)] = version.pk
            for file in files:
                file.version_id = version.pk

    def _unique_name(self, name: str) -> str:
        unique, n = name, 1
        while unique.lower() in self.names:
            n += 1
            suffix = f"-{n}"
            unique = name[: naming.NAME_MAX - len(suffix)] + suffix
        self.names.add(unique.lower())
        return unique

    def _summarise(self, batch: list[Candidate], *, exclude: set[int]) -> None:
        """Recompute this batch's touched versions (not the `exclude`d new ones) from all their files."""
        by_id = {self.versions[(c.root, c.abspath)]: c for c in batch}
        ids = [pk for pk in by_id if pk in self.touched and pk not in exclude]
        if not ids:
            return
        rows: dict[int, list[tuple[str, int, dict]]] = defaultdict(list)
        for version_id, path, size, header in ModelFile.objects.filter(version_id__in=ids).values_list(
            "version_id", "path", "size_bytes", "header"
        ):
            rows[version_id].append((path, size, header))
        versions = list(ModelVersion.objects.filter(pk__in=ids))
        for version in versions:
            candidate = by_id[version.pk]
            describe(version, candidate.base if candidate.folder else None, rows[version.pk])
        ModelVersion.objects.bulk_update(
            versions,
            [
                "format",
                "kind",
                "size_bytes",
                "params_count",
                "metadata",
                "vram_estimate",
                "estimated_vram_bytes",
            ],
        )

    def _forget_vanished(self, unreadable: Sequence[str]) -> None:
        """Versions no candidate matched lost all their files (unless an unreadable folder hid them)."""
        vanished = [
            version_id
            for (root, path), version_id in self.versions.items()
            if version_id in self.files and not any(discovery.under(path, folder) for folder in unreadable)
        ]
        gone = [row.pk for version_id in vanished for row in self.files[version_id].values()]
        if not gone:
            return
        self.counts["removed"] += len(gone)
        ModelFile.objects.filter(pk__in=gone).delete()
        ModelVersion.objects.filter(pk__in=vanished).update(
            size_bytes=0, params_count=None, vram_estimate={}, estimated_vram_bytes=None
        )
        self.touched.update(vanished)

    def _progress(self) -> None:
        ScanRun.objects.filter(pk=self.scan.pk).update(
            progress=min(self.seen / self.total, 0.99),
            files_seen=self.seen,
            errors=self.errors,
            updated_at=timezone.now(),
            **self.counts,
        )

    def _finish(self, *, failed: bool) -> None:
        dispatch.send_many_on_commit(
            messages.REGISTRY_CHECKSUM, [[chunk] for chunk in checksum_chunks(self.to_hash)]
        )
        # Versions still pending long after they were found lost their validation message.
        pending = ModelVersion.objects.filter(
            root__in=self.roots,
            validation_state=ValidationState.PENDING,
            created_at__lt=timezone.now() - QUEUED_RESEND_AFTER,
        ).values_list("pk", flat=True)
        dispatch.send_many_on_commit(
            messages.REGISTRY_VALIDATE, [[version_id] for version_id in sorted(self.touched.union(pending))]
        )
        dst = ScanState.FAILED if failed else ScanState.SUCCEEDED
        transition(
            self.scan,
            dst,
            machine=SCAN,
            finished_at=timezone.now(),
            progress=1.0,
            files_seen=self.seen,
            errors=self.errors,
            **self.counts,
        )


def _batches(candidates: Iterable[Candidate]) -> Iterator[list[Candidate]]:
    batch: list[Candidate] = []
    size = 0
    for candidate in candidates:
        batch.append(candidate)
        size += len(candidate.files)
        if size >= _BATCH_FILES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
