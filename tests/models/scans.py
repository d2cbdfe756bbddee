"""Running a scan and a validation in the test's own process (no worker): what the scan tests share."""

from __future__ import annotations

from pathlib import Path

from apps.models import scanning
from apps.models.models import ModelVersion, ScanRun


def scan_now() -> ScanRun:
    scan = scanning.scan_request(user=None)
    return scanning.scan_run(scan=scan)


def version_at(path: Path) -> ModelVersion:
    return ModelVersion.objects.select_related("model").get(path=str(path))


def validated(version: ModelVersion) -> ModelVersion:
    scanning.version_validate(version=version)
    version.refresh_from_db()
    return version


def report_lines(version: ModelVersion, check: str) -> list[dict[str, str]]:
    return [line for line in version.validation_report if line["check"] == check]
