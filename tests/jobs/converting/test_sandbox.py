"""The sandbox's walls against C code and programs, its bare environment, and a child that dies with
the worker: real processes, started the way the convert runner starts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from apps.jobs.converting import sandbox

# After the child's own imports (torch, safetensors), seal(), then each way around the hook that
# review 15a item 5 found or that reaches C without an audit event; each attempt prints its fate.
BYPASSES = """
import ctypes, os, subprocess, sys, time
import torch, safetensors.torch
from apps.jobs.converting.sandbox import seal
seal()
marker = {marker!r}
attempts = {{
    "cdll": lambda: ctypes.CDLL(None).system(("touch " + marker).encode()),
    "pythonapi": lambda: ctypes.pythonapi.system,
    "load_library": lambda: ctypes.cdll.LoadLibrary("libc.so.6"),
    "import_posixsubprocess": lambda: __import__("_posixsubprocess"),
    "import_cffi": lambda: __import__("cffi"),
    "fork_exec": lambda: subprocess._fork_exec(
        [b"/usr/bin/touch", marker.encode()], [b"/usr/bin/touch"], True, (), None, None,
        -1, -1, -1, -1, -1, -1, *os.pipe(), True, False, -1, None, None, None, -1, None, False),
    "popen": lambda: subprocess.run(["touch", marker]),
}}
for name, attempt in attempts.items():
    try:
        attempt()
        time.sleep(0.5)  # a program started runs on its own
        print(name, "ran")
    except Exception as exc:
        print(name, type(exc).__name__, exc)
"""


def test_a_sealed_process_with_torch_loaded_reaches_no_c_function_and_starts_no_program(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "BYPASS"

    done = subprocess.run(
        [sys.executable, "-c", BYPASSES.format(marker=str(marker))],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    said = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert set(said) == {
        "cdll",
        "pythonapi",
        "load_library",
        "import_posixsubprocess",
        "import_cffi",
        "fork_exec",
        "popen",
    }, done.stderr
    assert said["cdll"] == "Sealed refused in the conversion sandbox: ctypes.dlopen"
    assert said["pythonapi"] == "Sealed refused in the conversion sandbox: ctypes.dlsym"
    assert said["load_library"] == "Sealed refused in the conversion sandbox: ctypes.dlopen"
    assert (
        said["import_posixsubprocess"] == "Sealed refused in the conversion sandbox: import _posixsubprocess"
    )
    assert said["import_cffi"] == "Sealed refused in the conversion sandbox: import cffi"
    assert said["fork_exec"] == "Sealed refused in the conversion sandbox: _posixsubprocess.fork_exec"
    assert said["popen"] == "Sealed refused in the conversion sandbox: subprocess.Popen"
    assert not marker.exists()


def test_the_refusals_name_the_event_and_let_everything_else_through() -> None:
    assert sandbox.refusal("ctypes.call_function", (0, ())) == "ctypes.call_function"
    assert sandbox.refusal("import", ("cffi.api", None, [], [], [])) == "import cffi.api"
    assert sandbox.refusal("import", ("ctypesgen", None, [], [], [])) is None
    assert sandbox.refusal("open", ("/x", "r", 0)) is None


PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def test_the_child_gets_a_bare_environment_without_the_workers_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://moc:hunter2@db/moc")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@redis:6379/0")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "not-for-the-child")
    monkeypatch.setenv("SECRET_KEY", "not-for-the-child")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    argv, _ = sandbox.command([sys.executable, "-c", PRINT_ENV], without_namespace=True)

    process = sandbox.start(argv, home=tmp_path / "staging", cwd=settings.BASE_DIR)
    out, err = process.communicate(timeout=60)

    env = json.loads(out)
    assert not {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "SECRET_KEY"} & set(env), err
    assert "hunter2" not in out
    assert env["HOME"] == str(tmp_path / "staging")
    assert env["PATH"] == os.environ["PATH"]
    assert env["OMP_NUM_THREADS"] == "3"
    assert env[sandbox.PARENT_VAR] == str(os.getpid())
    assert set(env) <= {*sandbox.KEPT_VARS, "HOME", sandbox.PARENT_VAR, "CUDA_VISIBLE_DEVICES", "LC_CTYPE"}


def test_without_unshare_the_sandbox_refuses_unless_allowed_to_go_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an install without unshare

    with pytest.raises(sandbox.NoNamespace, match="unshare is not on PATH"):
        sandbox.command(["true"])
    argv, walls = sandbox.command(["true"], without_namespace=True)

    assert (argv, walls) == (["true"], [sandbox.AUDIT_HOOK])


# The worker: starts a child the way the runner does, says its pid, then waits to be killed.
WORKER = """
import sys, time
from pathlib import Path
from apps.jobs.converting import sandbox
argv, _ = sandbox.command(sys.argv[1:], without_namespace=True)
child = sandbox.start(argv, home=Path({home!r}), cwd={cwd!r})
print(child.pid, flush=True)
time.sleep(600)
"""
# A child that asks to die with its parent, says it is ready, then sleeps.
SLEEPER = """
import sys, time
from pathlib import Path
from apps.jobs.converting.sandbox import die_with_parent, parent_pid
if not die_with_parent(parent_pid()):
    sys.exit(1)
Path({ready!r}).touch()
time.sleep(600)
"""


def start_worker(tmp_path: Path, child_argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER.format(home=str(tmp_path), cwd=str(settings.BASE_DIR)), *child_argv],
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    return worker, int(worker.stdout.readline())


def gone(pid: int, *, within_s: float) -> bool:
    """Whether process `pid` ended (a zombie that nobody reaped counts as ended) within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def kill_worker(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def test_a_child_that_asked_to_die_with_the_worker_dies_when_the_worker_is_killed(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    worker, pid = start_worker(tmp_path, [sys.executable, "-c", SLEEPER.format(ready=str(ready))])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the child never got ready"
    finally:
        kill_worker(worker)

    try:
        assert gone(pid, within_s=10), "the child outlived its worker"
    finally:
        if not gone(pid, within_s=0.1):
            os.kill(pid, signal.SIGKILL)


def test_the_conversion_child_of_a_worker_killed_while_it_started_converts_nothing(
    tmp_path: Path, pickled: Path
) -> None:
    out = tmp_path / "out"
    worker, pid = start_worker(
        tmp_path, [sys.executable, "-m", "apps.jobs.converting.child", str(pickled), str(out)]
    )
    kill_worker(worker)  # long before the child has imported torch and asked to die with it

    try:
        assert gone(pid, within_s=60), "the child outlived its worker"
    finally:
        if not gone(pid, within_s=0.1):
            os.kill(pid, signal.SIGKILL)
    assert not out.exists()
