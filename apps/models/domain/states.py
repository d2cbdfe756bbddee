"""State machines owned by the model registry (pure Python, no Django)."""

from enum import StrEnum

from apps.core.domain.statemachine import StateMachine


class ValidationState(StrEnum):
    PENDING = "pending"
    VALIDATING = "validating"
    VALID = "valid"
    INVALID = "invalid"


V = ValidationState
# A checked version can be checked again (files changed, the checks got stricter), so
# VALID and INVALID lead back to VALIDATING; nothing is final.
VALIDATION = StateMachine(
    "model version validation",
    ValidationState,
    initial=V.PENDING,
    transitions={
        V.PENDING: {V.VALIDATING},
        V.VALIDATING: {V.VALID, V.INVALID},
        V.VALID: {V.VALIDATING},
        V.INVALID: {V.VALIDATING},
    },
    tones={V.VALID: "ok", V.VALIDATING: "warn", V.INVALID: "bad"},
)


class ScanState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every root walked; single files may still have failed (counted)
    FAILED = "failed"  # the scan itself could not finish (a root unreadable, the worker lost)


S = ScanState
SCAN = StateMachine(
    "registry scan",
    ScanState,
    initial=S.QUEUED,
    transitions={S.QUEUED: {S.RUNNING, S.FAILED}, S.RUNNING: {S.SUCCEEDED, S.FAILED}},
    tones={S.RUNNING: "warn", S.SUCCEEDED: "ok", S.FAILED: "bad"},
)
SCAN_ACTIVE = frozenset({S.QUEUED.value, S.RUNNING.value})
