"""The job's state machine (pure Python, no Django)."""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"  # a cancel was asked while it ran; the runner stops at its next report
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


J = JobState
# RUNNING -> QUEUED is a retry after the worker running it was lost. A cancel that arrives
# after the runner finished does not hide the outcome, so CANCELLING may still end as
# SUCCEEDED or FAILED.
JOB = StateMachine(
    "job",
    JobState,
    initial=J.QUEUED,
    transitions={
        J.QUEUED: {J.RUNNING, J.CANCELLED},
        J.RUNNING: {J.SUCCEEDED, J.FAILED, J.CANCELLED, J.QUEUED, J.CANCELLING},
        J.CANCELLING: {J.CANCELLED, J.SUCCEEDED, J.FAILED},
    },
    tones={J.RUNNING: "warn", J.CANCELLING: "warn", J.SUCCEEDED: "ok", J.FAILED: "bad"},
)

# A job in one of these holds (or is about to hold) a worker.
JOB_ACTIVE = frozenset({J.RUNNING.value, J.CANCELLING.value})


class DatasetState(StrEnum):
    PENDING = "pending"  # registered, not yet read row by row
    VALID = "valid"
    INVALID = "invalid"  # a row (named in its errors) or the file itself is unusable


D = DatasetState
DATASET = StateMachine(
    "dataset",
    DatasetState,
    initial=D.PENDING,
    transitions={
        D.PENDING: {D.VALID, D.INVALID},
        D.VALID: {D.PENDING, D.VALID, D.INVALID},
        D.INVALID: {D.PENDING, D.VALID, D.INVALID},
    },
    tones={D.VALID: "ok", D.INVALID: "bad"},
)
