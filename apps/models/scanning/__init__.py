"""Scans of the model roots, file checksums and version validation: the registry's worker side.

A scan walks the roots (discovery.py) and brings the tables in line with what it found. A
file whose size, mtime and inode match its row is not read again; a new or changed one has
its header read (apps/models/formats) and its version's summary and VRAM estimate
recomputed; a file that is gone loses its row. Checksums and validation run afterwards in
their own tasks (tasks.py), queued when the scan commits.

Files a version reaches only through a reference (an ONNX model's external data, a shard an
index names) are data: stat-ed and hashed, never parsed.

Modules: requests (the web side: asking for scans and validations, the stale-scan reconciler),
run (the scan itself), reading (one candidate's files read, for the scan and for register),
register (one folder or file, a job's output, registered as a model's next version), describe (a
version's summary from its files' headers), lineage (an adapter's named base recorded as its
parent), checksums and validate (the tasks queued after a scan), base (what they share: roots,
the lock, queueing).
"""

from apps.models.scanning.base import configured_roots
from apps.models.scanning.checksums import file_checksum, file_path, files_checksum
from apps.models.scanning.describe import header_from_json, header_json
from apps.models.scanning.register import version_register
from apps.models.scanning.requests import scan_poisoned, scan_request, scans_fail_stale, validation_request
from apps.models.scanning.run import scan_run
from apps.models.scanning.validate import version_validate

__all__ = [
    "configured_roots",
    "file_checksum",
    "file_path",
    "files_checksum",
    "header_from_json",
    "header_json",
    "scan_poisoned",
    "scan_request",
    "scan_run",
    "scans_fail_stale",
    "validation_request",
    "version_register",
    "version_validate",
]
