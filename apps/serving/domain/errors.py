"""Why loading or serving a model failed, and what MOC does about each kind of failure.

Pure: the worker raises `ServingError` (or lets a library's exception through), `classify`
names its class, and the class decides whether a retry can help and what recovery follows.
Every failure is recorded and counted by its class, so an operator sees "3 out-of-memory
loads on node-a gpu 1" rather than a wall of tracebacks.
"""

from __future__ import annotations

import errno
import random
from enum import StrEnum


class ErrorClass(StrEnum):
    OUT_OF_MEMORY = "out_of_memory"  # the device could not hold it
    CORRUPT_FILE = "corrupt_file"  # the files are damaged, missing or not what their header says
    RUNTIME_MISSING = "runtime_missing"  # the worker lacks the library the format needs
    TIMEOUT = "timeout"  # it took longer than it was allowed
    DEVICE_LOST = "device_lost"  # the device stopped answering (XID error, driver reset)
    BAD_INPUT = "bad_input"  # the caller's request does not fit the model
    NOT_ALLOWED = "not_allowed"  # a policy refused it (pickle weights nobody allowed)
    TRANSIENT = "transient"  # a hiccup that may pass: a file busy, the broker blinking
    INTERNAL = "internal"  # anything else: MOC's own bug or an unknown library error
    CANCELLED = "cancelled"  # its caller went away: nobody waits for the answer any more


class Refusal(StrEnum):
    """Why the web side answered a request without a model's answer: the API's error code and
    the refusal's label in moc_inference_refused_total."""

    NOT_LOADED = "not_loaded"  # no LOADED placement (409), or its only ones were lost (503)
    BREAKER_OPEN = "breaker_open"  # every candidate's circuit breaker refuses (503)
    BULKHEAD_FULL = "bulkhead_full"  # the version's bulkhead has no slot nor room to wait (429)
    WORKER_SILENT = "worker_silent"  # no live worker consumes the placement's device queue (503)
    QUEUE_BUSY = "queue_busy"  # this web process has its bound of requests waiting on devices (503)
    BROKER_UNAVAILABLE = "broker_unavailable"  # Redis cannot be reached to send or wait (503)


class Recovery(StrEnum):
    """What follows a failed load or request, by the failure's class."""

    EVICT_AND_RETRY = "evict_and_retry"  # OOM at load: the version is placed on another device, once
    REPLACE = "replace"  # device lost: mark the device unhealthy and place the version elsewhere
    RETRY = "retry"  # transient: retried with backoff
    NONE = "none"  # the caller or an operator must act: nothing automatic would help


RECOVERY: dict[ErrorClass, Recovery] = {
    ErrorClass.OUT_OF_MEMORY: Recovery.EVICT_AND_RETRY,
    ErrorClass.DEVICE_LOST: Recovery.REPLACE,
    ErrorClass.TRANSIENT: Recovery.RETRY,
}

# Failures that say nothing about the placement's health: a caller's bad request must not
# open the breaker for everybody else.
NOT_THE_PLACEMENTS_FAULT = frozenset({ErrorClass.BAD_INPUT})


class ServingError(Exception):
    """A failure MOC's serving code understood well enough to name its class."""

    error_class = ErrorClass.INTERNAL

    def __init__(self, message: str, error_class: ErrorClass | None = None) -> None:
        super().__init__(message)
        if error_class is not None:
            self.error_class = error_class


class OutOfMemory(ServingError):
    error_class = ErrorClass.OUT_OF_MEMORY


class HostShortfall(OutOfMemory):
    """The host's available memory cannot take a load onto a device that keeps its weights there.
    Every such device of the same node shares that memory, so none of them is tried next."""


class CorruptFile(ServingError):
    error_class = ErrorClass.CORRUPT_FILE


class RuntimeMissing(ServingError):
    error_class = ErrorClass.RUNTIME_MISSING


class BadInput(ServingError):
    error_class = ErrorClass.BAD_INPUT


class NotAllowed(ServingError):
    error_class = ErrorClass.NOT_ALLOWED


class DeviceLost(ServingError):
    error_class = ErrorClass.DEVICE_LOST


class Transient(ServingError):
    error_class = ErrorClass.TRANSIENT


class Cancelled(ServingError):
    """The request's caller went away (apps.serving.domain.wire's cancel key): it stops where it
    is, with no answer to send. Raised from a runtime's listener, so decoding ends at once."""

    error_class = ErrorClass.CANCELLED


# Words the CUDA runtime and drivers use when the device itself is gone, as torch and
# onnxruntime pass them on in their exception messages.
_DEVICE_LOST_WORDS = (
    "device-side assert",
    "unspecified launch failure",
    "illegal memory access",
    "uncorrectable ecc",
    "gpu is lost",
    "fallen off the bus",
    "no cuda gpus are available",
    "cuda error: unknown error",
)
# strerror(ENOMEM) is "Cannot allocate memory": what a map of weights larger than the host can back
# says ("unable to mmap 68719476736 bytes from file <…/model.safetensors>: Cannot allocate memory").
_OOM_WORDS = (
    "out of memory",
    "failed to allocate memory",
    "cudaerrormemoryallocation",
    "cannot allocate memory",
)


def classify(exc: BaseException) -> ErrorClass:
    """The class of any exception a load or a request raised, by its type first, then its words."""
    if isinstance(exc, ServingError):
        return exc.error_class
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
        return ErrorClass.OUT_OF_MEMORY
    if isinstance(exc, TimeoutError):
        return ErrorClass.TIMEOUT
    if isinstance(exc, ModuleNotFoundError):
        return ErrorClass.RUNTIME_MISSING
    text = f"{type(exc).__name__}: {exc}".lower()
    if "outofmemory" in text or any(word in text for word in _OOM_WORDS):
        return ErrorClass.OUT_OF_MEMORY
    if any(word in text for word in _DEVICE_LOST_WORDS):
        return ErrorClass.DEVICE_LOST
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, UnicodeDecodeError)):
        return ErrorClass.CORRUPT_FILE
    # By the library's error type, not the message: a message that merely names a model.safetensors
    # file says nothing about the file's state.
    if "safetensor" in type(exc).__name__.lower() or "headertoolarge" in text or "invalid protobuf" in text:
        return ErrorClass.CORRUPT_FILE
    if isinstance(exc, (ConnectionError, BlockingIOError, InterruptedError)):
        return ErrorClass.TRANSIENT
    return ErrorClass.INTERNAL


def recovery(error_class: ErrorClass) -> Recovery:
    return RECOVERY.get(error_class, Recovery.NONE)


def backoff_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (1-based): exponential with full jitter.

    Full jitter (a uniform draw between 0 and the exponential step) spreads retries of many
    callers that failed together, so they do not come back together.
    """
    step = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, step)
