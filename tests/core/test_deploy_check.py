"""Production settings pass Django's deployment checklist."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from tests.procs import ROOT, project_env


def test_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    env = project_env(
        MOC_PRODUCTION="true",
        SECRET_KEY=secrets.token_urlsafe(48)[:64],
        ALLOWED_HOSTS="moc.example.com",
        MOC_VAR_DIR=str(tmp_path),
    )
    for name in ("DEBUG", "DATABASE_URL", "SECRET_KEY_FILE"):
        env.pop(name, None)

    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
