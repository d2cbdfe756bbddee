"""A circuit breaker for one placement (one loaded copy of a model on one device).

Pure: the rules only; apps/serving/resilience.py keeps the state in Redis so every web process
and worker shares one breaker per placement. A placement that keeps failing is refused at
once for `open_s` (a fast 503 rather than a slow error), then one probe request tests it:
a probe that succeeds closes the breaker, one that fails opens it again.

An outcome that arrives while the breaker is open belongs to a request admitted before it
opened; the breaker has already decided, so such outcomes change nothing (and write nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

# Enough of an error to recognise it on a page or in a 503, not a whole traceback.
LAST_ERROR_CHARS = 500
# While a probe is in flight its answer is near; a refused caller may come back this soon.
PROBE_WAIT_S = 1.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5  # consecutive counted failures that open it
    open_s: float = 30.0  # how long it stays open before letting a probe through
    half_open_probes: int = 1  # requests let through at once while half-open

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_probes < 1 or self.open_s < 0:
            raise ValueError(f"impossible breaker settings: {self}")


@dataclass(frozen=True, slots=True)
class Breaker:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive counted failures
    # When it opened; while half-open, when it began letting probes through. None when closed.
    opened_at: float | None = None
    probes: int = 0  # probes in flight while half-open
    last_error: str = ""  # "out_of_memory: CUDA out of memory ...", shown on pages and in 503s
    opened_count: int = 0  # how many times it opened (for metrics)


def admit(b: Breaker, cfg: BreakerConfig, now: float) -> tuple[bool, Breaker, str]:
    """Whether a request may go to the placement, the breaker after it, and why not if refused.

    A half-open breaker whose probes have all been out for `open_s` presumes them lost (the
    process holding them died) and lets a fresh probe through, so it cannot stay stuck.
    """
    if b.state == BreakerState.CLOSED:
        return True, b, ""
    assert b.opened_at is not None
    waited = now - b.opened_at
    if b.state == BreakerState.OPEN:
        if waited < cfg.open_s:
            return False, b, _reason(b, cfg, now)
        return True, replace(b, state=BreakerState.HALF_OPEN, opened_at=now, probes=1), ""
    if b.probes < cfg.half_open_probes:
        return True, replace(b, probes=b.probes + 1), ""
    if waited >= cfg.open_s:
        return True, replace(b, opened_at=now, probes=1), ""
    return False, b, _reason(b, cfg, now)


def on_success(b: Breaker, cfg: BreakerConfig, now: float) -> Breaker:
    """A request the placement served: clears the run of failures; a probe's success closes it."""
    if b.state == BreakerState.OPEN or (b.state == BreakerState.CLOSED and b.failures == 0):
        return b
    return replace(b, state=BreakerState.CLOSED, failures=0, opened_at=None, probes=0)


def on_failure(b: Breaker, cfg: BreakerConfig, now: float, error: str) -> Breaker:
    """A failure that was the placement's fault: counts toward opening; a probe's failure re-opens."""
    if b.state == BreakerState.OPEN:
        return b
    failed = replace(b, failures=b.failures + 1, last_error=error[:LAST_ERROR_CHARS])
    if b.state == BreakerState.HALF_OPEN or failed.failures >= cfg.failure_threshold:
        return replace(
            failed, state=BreakerState.OPEN, opened_at=now, probes=0, opened_count=b.opened_count + 1
        )
    return failed


def retry_after_s(b: Breaker, cfg: BreakerConfig, now: float) -> float:
    """Seconds until admit() would let a request through again (0 when it would now)."""
    if b.state == BreakerState.CLOSED:
        return 0.0
    assert b.opened_at is not None
    # The same arithmetic as admit()'s test, so the two never disagree by a rounding.
    until_probe = max(0.0, cfg.open_s - (now - b.opened_at))
    if b.state == BreakerState.OPEN:
        return until_probe
    if b.probes < cfg.half_open_probes:
        return 0.0
    return min(PROBE_WAIT_S, until_probe)


def _reason(b: Breaker, cfg: BreakerConfig, now: float) -> str:
    run = f"{b.failures} failure" if b.failures == 1 else f"{b.failures} failures in a row"
    last = f" (last: {b.last_error})" if b.last_error else ""
    if b.state == BreakerState.OPEN:
        wait = math.ceil(retry_after_s(b, cfg, now))
        return f"circuit open after {run}{last}; next probe in {wait} s"
    probes = f"{b.probes} probe" if b.probes == 1 else f"{b.probes} probes"
    return f"circuit half-open after {run}{last}; {probes} in flight decide whether it closes"
