"""MOC_FINETUNE_OUTPUT_ROOT must lie inside a model root, or MOC refuses to start (else every
fine-tune and conversion would train to the end, then fail to register its output). Settings are
read once per process, so each case starts one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SETTINGS = "import django; django.setup()"


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SETTINGS],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "moc_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[3],
    )


def test_an_output_root_outside_every_model_root_stops_startup_naming_the_roots(tmp_path: Path) -> None:
    models, other = tmp_path / "models", tmp_path / "elsewhere"

    started = start(tmp_path, MOC_MODEL_ROOTS=str(models), MOC_FINETUNE_OUTPUT_ROOT=str(other))

    assert started.returncode != 0
    assert "ImproperlyConfigured: MOC_FINETUNE_OUTPUT_ROOT" in started.stderr
    assert f"must be inside one of MOC_MODEL_ROOTS ({models})" in started.stderr


@pytest.mark.parametrize("output", ["second/fine-tuned", "second", ""])
def test_an_output_root_inside_any_model_root_or_the_default_starts(tmp_path: Path, output: str) -> None:
    roots = f"{tmp_path / 'first'},{tmp_path / 'second'}"
    env = {"MOC_MODEL_ROOTS": roots, "MOC_FINETUNE_OUTPUT_ROOT": str(tmp_path / output) if output else ""}

    started = start(tmp_path, **env)

    assert started.returncode == 0, started.stderr
