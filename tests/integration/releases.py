"""The demo LM and its bad variants registered as versions 1, 2 and 3 of one model, ready to release.

A scan gives every folder a registered model of its own (apps.models.scanning.run); a release,
though, must be of a version of the deployment's model. So after a real scan the variants' versions
are made the next versions of demo-gpt2, as an operator would (apps.models.services.version_move,
which deletes the models the scan made for them). Their files are then hashed and the versions
validated in this process, as a default worker would.
Used by tests/integration/test_rollout.py, tests/models/test_demo_variants.py and bench/rollout.py
(inside its scratch MOC's `manage.py shell`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from django.db import transaction

from apps.models import demo, scanning, services
from apps.models.demo.variants import VARIANTS
from apps.models.models import ModelFile, ModelVersion
from apps.models.scanning.checksums import files_checksum
from apps.models.scanning.validate import version_validate


def register_demo(
    *, demo_root: Path, variants_root: Path, also: Sequence[Path] = ()
) -> dict[str, ModelVersion]:
    """Scan the configured roots (which must hold both folders), make the variants (and the folders
    `also` names) versions of demo-gpt2, hash and validate them all; by folder name."""
    scanning.scan_run(scan=scanning.scan_request())
    base = ModelVersion.objects.get(path=str((demo_root / demo.BASE).resolve()))
    paths = [(variants_root / name).resolve() for name in VARIANTS] + [p.resolve() for p in also]
    versions = {demo.BASE: base, **as_versions_of(base, paths)}
    ids = [version.pk for version in versions.values()]
    files_checksum(file_ids=list(ModelFile.objects.filter(version_id__in=ids).values_list("pk", flat=True)))
    for version in versions.values():
        version_validate(version=version)
        version.refresh_from_db()
    return versions


@transaction.atomic
def as_versions_of(base: ModelVersion, paths: Sequence[Path]) -> dict[str, ModelVersion]:
    """The versions scanned at `paths`, each made the next version of `base`'s model (already one
    of it: left as it is), by folder name."""
    found: dict[str, ModelVersion] = {}
    for path in paths:
        version = ModelVersion.objects.select_related("model").get(path=str(path))
        if version.model_id != base.model_id:
            version = services.version_move(version=version, model=base.model)
        found[path.name] = version
    return found
