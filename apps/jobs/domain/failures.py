"""Why a job failed, as a class a retry policy and an operator can both act on.

Runners raise a `JobFailure` where they know the class (a bad row, a missing library); anything
else they let escape is classified by `classify()` from the exception's type and words, so a CUDA
out-of-memory deep inside torch still reads `out_of_memory` on the job's page.
"""

from __future__ import annotations

from apps.jobs.domain.kinds import ErrorClass


class JobFailure(Exception):
    """A failure whose class the runner knows."""

    error_class: ErrorClass = ErrorClass.RUNNER_ERROR


class BadData(JobFailure):
    """A dataset row the runner cannot use; the message names the row."""

    error_class = ErrorClass.BAD_DATA

    def __init__(self, dataset: str, row: int, why: str) -> None:
        super().__init__(f"dataset {dataset}, row {row}: {why}")
        self.dataset, self.row, self.why = dataset, row, why


class OutOfMemory(JobFailure):
    """The device ran out of memory (on a simulated GPU: its simulated capacity, and the message says so)."""

    error_class = ErrorClass.OUT_OF_MEMORY


class RuntimeMissing(JobFailure):
    """The worker lacks a library the kind needs."""

    error_class = ErrorClass.RUNTIME_MISSING


class DeviceLost(JobFailure):
    """The device stopped answering."""

    error_class = ErrorClass.DEVICE_LOST


# Words in an exception's type name or message that give its class away (lower case).
_OOM_WORDS = ("out of memory", "outofmemory", "cuda_error_out_of_memory", "cublas_status_alloc_failed")
_DEVICE_WORDS = (
    "cuda error: an illegal memory access",
    "device-side assert",
    "cuda error: unspecified launch failure",
    "no cuda gpus are available",
    "cuda driver",
    "gpu is lost",
    "nvml_error_gpu_is_lost",
    "cuda error: uncorrectable ecc",
)


def classify(exc: BaseException) -> ErrorClass:
    """The class of a failure a runner let escape."""
    if isinstance(exc, JobFailure):
        return exc.error_class
    name = type(exc).__name__.lower()
    words = f"{name}: {exc}".lower()
    if isinstance(exc, MemoryError) or any(w in words for w in _OOM_WORDS):
        return ErrorClass.OUT_OF_MEMORY
    if isinstance(exc, ImportError):
        return ErrorClass.RUNTIME_MISSING
    if any(w in words for w in _DEVICE_WORDS):
        return ErrorClass.DEVICE_LOST
    return ErrorClass.RUNNER_ERROR
