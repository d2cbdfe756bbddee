"""Readiness checks: each dependency by name, with a reason when it fails."""

from __future__ import annotations

from typing import Any

from apps.core import outbox, redis_clients, selectors, workers


def _check(fn: Any) -> dict[str, Any]:
    try:
        detail = fn()
    except Exception as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "detail": detail or "ok"}


def _database() -> str:
    selectors.database_ok()
    return "ok"


def _redis() -> str:
    redis_clients.redis_client(timeout=1.0).ping()
    return "ok"


def _workers() -> str:
    live = workers.live_workers(redis_clients.redis_client(timeout=1.0))
    if not live:
        raise RuntimeError("no Celery worker has sent a heartbeat recently")
    return f"{len(live)} live: " + ", ".join(w["hostname"] for w in live)


def readiness() -> dict[str, dict[str, Any]]:
    # The outbox only informs (what waits for the broker, since when, whether a live worker is
    # there to drain it, what failed for good): the web still accepts work while it waits, so it
    # never makes MOC unready.
    return {
        "database": _check(_database),
        "redis": _check(_redis),
        "workers": _check(_workers),
        "outbox": _check(outbox.describe),
    }
