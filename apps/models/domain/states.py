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
