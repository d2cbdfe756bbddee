"""How the conversion child is kept off the network and away from other programs.

Two walls, both always where they can be:

1. A network namespace of its own (`unshare --net`, or `unshare --net --map-root-user` where an
   unprivileged user may make user namespaces): the kernel's wall. Inside it only a loopback
   interface exists and it is down, so no socket reaches anything, not even 127.0.0.1 - whatever
   code runs, Python or C. Workers that run as root (the compose images, this machine) have it.
2. `seal()`, which the child calls itself once its libraries are imported and before it opens the
   pickle: a Python audit hook (PEP 578, which cannot be removed once added) that refuses to make a
   socket, resolve a name, start a program or fork. It only sees what goes through Python, which is
   the only way a pickle's code could run (a pickle calls Python callables).

Where the namespace cannot be made (a container without CAP_SYS_ADMIN and without user
namespaces), the conversion still runs, behind the audit hook alone, and the job's result says
which walls it had: refusing would leave such installs unable to convert at all, and the
weights-only loader already refuses every pickle that imports code; the walls are for the day it
has a bug. Nothing here imports Django: the child imports it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Sequence
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
_PROBE_TIMEOUT_S = 10


class Sealed(PermissionError):
    """The child tried something its seal refuses."""


def seal() -> None:
    """From now on this process may not use the network or start programs (see the module's rule)."""

    def refuse(event: str, args: tuple[Any, ...]) -> None:
        if event in REFUSED_EVENTS:
            raise Sealed(f"refused in the conversion sandbox: {event}")

    sys.addaudithook(refuse)


@functools.cache
def namespace_prefix() -> tuple[str, ...] | None:
    """The command prefix that starts a program in a network namespace of its own, or None where
    this process cannot make one (found by trying, once per process)."""
    unshare = shutil.which("unshare")
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


def command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`argv` as the sandboxed command to start, and the walls it will have (the child seals itself:
    a child that does not call seal() has the namespace only)."""
    prefix = namespace_prefix()
    walls = [NAMESPACE, AUDIT_HOOK] if prefix else [AUDIT_HOOK]
    return [*(prefix or ()), *argv], walls
