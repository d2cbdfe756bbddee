"""How the conversion child is kept off the network, away from other programs and from the worker's
secrets, and made to die with the worker.

Three walls; only the first may be waived, and only by the operator:

1. A network namespace of its own (`unshare --net`, or `unshare --net --map-root-user` where an
   unprivileged user may make user namespaces): the kernel's wall. Inside it only a loopback
   interface exists and it is down, so no TCP or UDP socket reaches anything, not even 127.0.0.1,
   whatever code runs, Python or C. It does not hide unix sockets that lie in the filesystem (a local
   Postgres or Redis socket): the audit hook is the wall for those. A worker with CAP_SYS_ADMIN, or
   on a host that lets unprivileged users make user namespaces, has it; a container under Docker's
   default seccomp profile, which refuses unshare without CAP_SYS_ADMIN, usually has not. Where it
   cannot be made `command()` raises `NoNamespace`: the issue asks for no network, not for best
   effort, so the runner refuses unless the operator opted in (MOC_CONVERT_WITHOUT_NAMESPACE).
2. `seal()`, which the child calls itself once its libraries are imported and before it opens the
   pickle: a Python audit hook (PEP 578, which cannot be removed once added) that refuses to make a
   socket, resolve a name, start a program, fork, open a C library or look a C function up through
   ctypes (every `ctypes.*` event: `ctypes.CDLL(None).system(...)` fails at the dlopen), and to
   import cffi, ctypes or _posixsubprocess where they are not loaded yet. ctypes stays loaded:
   torch imports it, and safetensors' save_file imports it again on every call (to point numpy at a
   tensor's memory), so a sealed process keeps what was imported but can open no library and look
   no function up. _posixsubprocess starts a program with no audit event of its own, so seal() also
   unloads it and disarms its fork_exec. The hook sees what Python code does, and what a pickle
   could run is Python callables; torch's weights-only loader already refuses every pickle that
   names one beyond tensors and plain containers, so the walls are for the day that loader has a
   bug. Not covered: C code of torch's own, and a C function some library looked up before the seal
   (Python 3.11 raises no event when one is called).
3. A bare environment (`environment()`): the child gets PATH, PYTHONPATH, the library path, the
   locale, the thread-count variables and HOME (its staging folder) - never the worker's
   DJANGO_SECRET_KEY, DATABASE_URL or REDIS_URL.

The child also asks the kernel to kill it when the worker dies (`die_with_parent`, PR_SET_PDEATHSIG
set by the child itself rather than in a preexec_fn, which is unsafe in a worker that runs threads),
so a worker killed with SIGKILL leaves no conversion running that holds a whole pickle in memory.
The signal comes when the worker's thread that started the child ends; the runner's thread waits
for the child, so that is when the worker dies.

Nothing here imports Django: the runner passes the operator's choice in.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NAMESPACE = "network namespace"
AUDIT_HOOK = "audit hook"
# The audit events (https://docs.python.org/3/library/audit_events.html) a sealed process refuses.
REFUSED_EVENTS = frozenset(
    {
        "socket.__new__",
        "socket.connect",
        "socket.bind",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.sendto",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "pty.spawn",
        "webbrowser.open",
    }
)
# Every ctypes event (ctypes.dlopen, ctypes.dlsym, ctypes.call_function, ...): a sealed process calls
# no C function by address.
REFUSED_EVENT_PREFIXES = ("ctypes.",)
# Modules a sealed process may not import (the `import` event, raised for a module not loaded yet):
# ways to C functions without audit events of their own.
REFUSED_MODULES = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "cffi", "_cffi_backend"})
# Of those, the ones seal() unloads (so that an import goes through the hook): not ctypes, which
# torch and safetensors import again as they run (behind the ctypes.* events instead).
UNLOADED_MODULES = frozenset({"_posixsubprocess", "cffi", "_cffi_backend"})
# The worker's environment variables the child keeps (when they are set); nothing else passes.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
KEPT_VARS = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", *THREAD_VARS)
# Where the child finds the worker's pid, to know whether the worker died before it could ask to die
# with it.
PARENT_VAR = "MOC_SANDBOX_PARENT_PID"
_PR_SET_PDEATHSIG = 1
_PROBE_TIMEOUT_S = 10


class Sealed(PermissionError):
    """The child tried something its seal refuses."""


class NoNamespace(RuntimeError):
    """This process cannot start a program in a network namespace of its own."""


def refusal(event: str, args: tuple[Any, ...]) -> str | None:
    """What a sealed process refuses in audit event `event` (None: it is allowed)."""
    if event in REFUSED_EVENTS or event.startswith(REFUSED_EVENT_PREFIXES):
        return event
    if event == "import" and args and str(args[0]).partition(".")[0] in REFUSED_MODULES:
        return f"import {args[0]}"
    return None


def seal() -> None:
    """From now on this process may not use the network, start programs or open C libraries through
    ctypes (see the module's rule). Call it after the libraries are imported."""
    for name in [m for m in sys.modules if m.partition(".")[0] in UNLOADED_MODULES]:
        del sys.modules[name]  # held by whoever imported them; an import now goes through the hook
    _disarm_fork_exec()

    def refuse(event: str, args: tuple[Any, ...]) -> None:
        if (what := refusal(event, args)) is not None:
            raise Sealed(f"refused in the conversion sandbox: {what}")

    sys.addaudithook(refuse)


def _disarm_fork_exec() -> None:
    """Replace _posixsubprocess.fork_exec, where subprocess and this process can reach it, with a
    refusal: it starts a program without raising an audit event (subprocess.Popen raises one first,
    but the function itself can be called directly)."""

    def refused(*args: object, **kwargs: object) -> None:
        raise Sealed("refused in the conversion sandbox: _posixsubprocess.fork_exec")

    held = sys.modules.get("_posixsubprocess")
    if held is not None:
        held.fork_exec = refused  # type: ignore[attr-defined]
    if hasattr(subprocess, "_fork_exec"):
        subprocess._fork_exec = refused  # type: ignore[attr-defined]
    if hasattr(subprocess, "_posixsubprocess"):
        subprocess._posixsubprocess.fork_exec = refused  # type: ignore[attr-defined]


def die_with_parent(parent_pid: int | None) -> bool:
    """Ask the kernel to SIGKILL this process when the thread that started it ends (Linux), before
    seal() refuses ctypes. False when the parent (`parent_pid`, the worker) is already gone: the
    request came too late, and the caller should stop."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    return parent_pid is None or os.getppid() == parent_pid


def parent_pid() -> int | None:
    """The worker's pid, as start() put it in this child's environment (None when run by hand)."""
    value = os.environ.get(PARENT_VAR, "")
    return int(value) if value.isdigit() else None


def environment(*, home: Path) -> dict[str, str]:
    """The child's whole environment: the kept variables of this one, HOME, and this pid."""
    env = {name: os.environ[name] for name in KEPT_VARS if name in os.environ}
    env["HOME"] = str(home)
    env[PARENT_VAR] = str(os.getpid())
    env["CUDA_VISIBLE_DEVICES"] = ""  # the child loads to the CPU and never touches a GPU
    return env


def namespace_prefix() -> tuple[str, ...] | None:
    """The command prefix that starts a program in a network namespace of its own, or None where
    this process cannot make one (no unshare on PATH, or unshare refused)."""
    return _prefix_for(shutil.which("unshare"))


@functools.cache
def _prefix_for(unshare: str | None) -> tuple[str, ...] | None:
    """The working prefix with this unshare program (found by trying, once per process)."""
    if unshare is None:
        return None
    for prefix in ((unshare, "--net"), (unshare, "--net", "--map-root-user")):
        try:
            done = subprocess.run(
                [*prefix, "true"], capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return None


def command(argv: Sequence[str], *, without_namespace: bool = False) -> tuple[list[str], list[str]]:
    """`argv` as the sandboxed command to start, and the walls it will have (the child seals itself:
    a child that does not call seal() has the namespace only). Raises NoNamespace where no namespace
    can be made, unless `without_namespace` allows the audit hook alone."""
    prefix = namespace_prefix()
    if prefix is None and not without_namespace:
        found = "unshare is not on PATH" if shutil.which("unshare") is None else "unshare --net failed"
        raise NoNamespace(f"this worker cannot start a process in a network namespace of its own ({found})")
    walls = [NAMESPACE, AUDIT_HOOK] if prefix else [AUDIT_HOOK]
    return [*(prefix or ()), *argv], walls


def start(argv: Sequence[str], *, home: Path, cwd: Path | str) -> subprocess.Popen[str]:
    """Start a command made by command() with the bare environment, its output piped (text)."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=environment(home=home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
