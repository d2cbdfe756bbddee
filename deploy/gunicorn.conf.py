"""Gunicorn settings for MOC's web process, shared by scripts/run.sh and compose.yaml.

Flags on the command line (bind, workers, threads) win over what is set here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

accesslog = "-"
errorlog = "-"
# The client's address comes from the proxy's X-Forwarded-For; %(M)s is the time taken in ms.
access_log_format = '%({x-forwarded-for}i)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'

timeout = 60
graceful_timeout = 30
keepalive = 5
# Gunicorn's control socket (for gunicornc) defaults to one path per user, which a second
# gunicorn on the machine (a test server, another checkout) would fight over; MOC has no use for it.
control_socket_disable = True

# Worker heartbeats go to a file; on a container's overlay filesystem a slow write can get a
# healthy worker killed, so keep them in memory where there is memory to keep them in.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"


def on_starting(server: Arbiter) -> None:
    """Derive the bounds on requests one web process keeps waiting on devices, in all and on one
    device queue, from its real thread count (the command line's --threads), leaving a thread
    for everything else."""
    bound = str(max(1, server.cfg.threads - 1))
    os.environ.setdefault("MOC_SERVING_WAITING_PER_PROCESS", bound)
    os.environ.setdefault("MOC_SERVING_WAITING_PER_QUEUE", bound)


def child_exit(server: Arbiter, worker: Worker) -> None:
    """Tell prometheus_client a worker is gone, so /metrics stops merging its live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
