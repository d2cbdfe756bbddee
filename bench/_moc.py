"""A scratch MOC for the benches that measure the real thing over HTTP (inference_serving, rollout).

Loopback only, everything under one folder: a redis-server, a migrated SQLite, a model root, one
node of one simulated 24 GiB GPU whose device worker listens on QUEUE, API throttles out of the way.
Each bench starts the processes it needs (gunicorn, workers, beat) with start().
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.procs import ROOT, Process, RedisServer, free_port, project_env, python, wait_until

NODE = "bench"
QUEUE = f"gpu.{NODE}.0"

# The start of a `setup` script: the demo models made into the model root and registered by a scan,
# an operator and their API key (`secret`), the demo LM's version (`version`).
DEMO_AND_OPERATOR = """
import json
from apps.core import roles, services
from apps.core.domain.roles import Role
from apps.models import demo, scanning
from apps.models.models import ModelVersion
from django.contrib.auth import get_user_model
from django.conf import settings
from pathlib import Path
root = Path(settings.MOC_MODEL_ROOTS[0])
demo.make(root, force=False, log=lambda line: None)
scanning.scan_run(scan=scanning.scan_request())
user = get_user_model().objects.create_user("bench", password="bench-pass-1")
roles.set_role(user, Role.OPERATOR)
_, secret = services.api_key_create(owner=user, name="bench", role=Role.OPERATOR, acting_role=Role.OPERATOR)
version = ModelVersion.objects.get(path=str(root / demo.BASE))
"""


class ScratchMOC:
    """A migrated scratch MOC whose `setup` script has run in its Django shell. The script's last
    line of output is JSON, kept as `self.setup`; its "key", an operator's API key, is what
    `self.http` (based at `self.base`, where gunicorn is to listen) sends."""

    def __init__(self, folder: Path, setup: str) -> None:
        self.folder = folder
        self.redis = RedisServer(folder / "redis")
        self.redis.start()
        self.processes: list[Process] = []
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = project_env(
            MOC_VAR_DIR=str(folder),
            REDIS_URL=self.redis.url,
            MOC_MODEL_ROOTS=str(folder / "models"),
            MOC_NODE_NAME=NODE,
            MOC_DEVICES="sim:1x24GiB",
            MOC_DEVICE_QUEUES=QUEUE,
            MOC_REGISTRY_SCAN_ON_START="false",
            MOC_THROTTLE_API_KEY="1000000/min",
            MOC_PUBLIC_URL=self.base,
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        )
        subprocess.run([python(), "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=self.env, check=True)
        out = subprocess.run(
            [python(), "manage.py", "shell", "-c", setup],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        self.setup: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.setup['key']}"}, timeout=60
        )

    def start(self, name: str, args: list[str]) -> None:
        """Run `args` in the scratch MOC's environment, its output in <folder>/<name>.log."""
        process = Process(args, self.env, self.folder / f"{name}.log")
        process.start()
        self.processes.append(process)

    def wait_serving(self) -> None:
        wait_until(lambda: httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200, 60, "gunicorn")

    def stop(self) -> None:
        """The processes in the reverse order of their start, then redis-server."""
        for process in reversed(self.processes):
            process.stop()
        self.http.close()
        self.redis.stop()
