"""compose.yaml is the production shape; no engine runs here, so validate it with docker-compose."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.procs import ROOT


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_is_valid_for_docker_compose() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is not installed (scripts/test.sh installs it as root)")
        pytest.skip("docker-compose is not installed")

    proc = subprocess.run(
        [binary, "-f", "compose.yaml", "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert proc.returncode == 0, proc.stderr


def test_compose_runs_the_production_shape() -> None:
    services = _compose()["services"]

    for name in ("postgres", "redis", "proxy", "web", "ws", "cpu-worker", "beat", "prometheus"):
        assert name in services, name
    gpu_workers = [s for name, s in services.items() if name.startswith("gpu-worker")]
    assert gpu_workers
    for worker in gpu_workers:
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia"


def test_exactly_one_beat_runs_in_compose() -> None:
    services = _compose()["services"]

    beats = [name for name, s in services.items() if "beat" in str(s.get("command", ""))]

    assert beats == ["beat"]
