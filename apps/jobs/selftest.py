"""The self-test job: from inside a worker, check what MOC needs and what the worker sees.

Each check records a log line with its evidence and ends up in the job's result; a failed
check fails the job (error class `check_failed`), with every other check still reported.
"""

from __future__ import annotations

import os
import platform
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import psutil
from django.db import connection

from apps.core import events as core_events
from apps.core import redis_clients
from apps.fleet.agent import open_node_backend
from apps.jobs import events
from apps.jobs.domain.kinds import SELFTEST_CHECKS, ErrorClass, LogLevel
from apps.jobs.models import Job
from apps.jobs.reporting import Outcome, Report

# A check returns a one-line summary and its evidence, or raises to fail.
Check = Callable[[Job], tuple[str, dict[str, Any]]]
_ROUND_TRIP_TIMEOUT_S = 5.0
_GIB = 1024**3


def _database(job: Job) -> tuple[str, dict[str, Any]]:
    if not Job.objects.filter(pk=job.pk).exists():
        raise RuntimeError(f"job #{job.pk} is not in the database this worker uses")
    vendor = connection.vendor
    return f"{vendor} answers and holds job #{job.pk}", {"vendor": vendor}


def _redis(job: Job) -> tuple[str, dict[str, Any]]:
    client = redis_clients.redis_client()
    client.ping()
    server = client.info("server")
    kwargs = client.connection_pool.connection_kwargs
    where = f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"
    version = server.get("redis_version", "?")
    return f"Redis {version} at {where} answers PING", {"version": version, "address": where}


def _channel_layer(job: Job) -> tuple[str, dict[str, Any]]:
    group = events.selftest_group(job.pk, uuid.uuid4().hex[:12])
    backend, ms = core_events.round_trip(group, timeout_s=_ROUND_TRIP_TIMEOUT_S)
    return f"{backend}: group_send came back in {ms:.1f} ms", {
        "backend": backend,
        "round_trip_ms": round(ms, 2),
    }


def _devices() -> tuple[str, dict[str, Any]]:
    """What this node offers under MOC_DEVICES, found the way the fleet agent finds it
    (so a missing NVIDIA driver is named here just as the agent's log names it)."""
    backend, reason = open_node_backend()
    try:
        info = backend.node_info()
        devices = backend.devices()
    finally:
        backend.close()
    return reason, {
        "backend": backend.name,
        "driver": info.driver_version or None,
        "cuda": info.cuda_version or None,
        "devices": [
            {
                "index": d.index,
                "name": d.name,
                "uuid": d.uuid,
                "simulated": d.simulated,
                "memory_total_bytes": d.memory_total_bytes,
            }
            for d in devices
        ],
    }


def _device(job: Job) -> tuple[str, dict[str, Any]]:
    memory = psutil.virtual_memory()
    cpus = os.cpu_count() or 0
    devices_summary, devices = _devices()
    evidence = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": cpus,
        "ram_total_bytes": memory.total,
        "ram_available_bytes": memory.available,
        "devices": devices,
    }
    summary = f"{evidence['hostname']}: {cpus} CPUs, {memory.total / _GIB:.1f} GiB RAM; {devices_summary}"
    return summary, evidence


CHECKS: dict[str, Check] = {
    "database": _database,
    "redis": _redis,
    "channel_layer": _channel_layer,
    "device": _device,
}


def run(job: Job, report: Report) -> Outcome:
    names = job.params.get("checks") or list(SELFTEST_CHECKS)
    results = []
    for done, name in enumerate(names):
        report.progress(done / len(names), f"Checking {name.replace('_', ' ')}")
        started = time.monotonic()
        try:
            summary, evidence = CHECKS[name](job)
            ok = True
        except Exception as exc:
            summary, evidence, ok = f"{type(exc).__name__}: {exc}", {}, False
        result = {
            "name": name,
            "ok": ok,
            "summary": summary,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "evidence": evidence,
        }
        results.append(result)
        report.log(f"{name}: {summary}", level=LogLevel.INFO if ok else LogLevel.ERROR, data=result)
    report.progress(1.0, "All checks done")
    failed = [r["name"] for r in results if not r["ok"]]
    outcome = {"ok": not failed, "worker": socket.gethostname(), "checks": results}
    if failed:
        return Outcome(
            result=outcome, error_class=ErrorClass.CHECK_FAILED, error=f"Failed checks: {', '.join(failed)}."
        )
    return Outcome(result=outcome)
