import pytest

from apps.core.domain.statemachine import InvalidTransition
from apps.models.domain.states import VALIDATION, ValidationState

V = ValidationState

ALLOWED = [
    (V.PENDING, V.VALIDATING),
    (V.VALIDATING, V.VALID),
    (V.VALIDATING, V.INVALID),
    (V.VALID, V.VALIDATING),
    (V.INVALID, V.VALIDATING),
]


def test_a_new_version_starts_pending() -> None:
    assert VALIDATION.initial == V.PENDING


@pytest.mark.parametrize(("src", "dst"), ALLOWED)
def test_validation_allows_the_documented_moves(src: V, dst: V) -> None:
    assert VALIDATION.can(src, dst)


def test_validation_allows_nothing_else() -> None:
    every = {(src.value, dst) for src in V for dst in VALIDATION.allowed(src)}
    assert every == {(src.value, dst.value) for src, dst in ALLOWED}


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (V.PENDING, V.VALID),
        (V.PENDING, V.INVALID),
        (V.VALID, V.INVALID),
        (V.INVALID, V.VALID),
        (V.VALID, V.PENDING),
    ],
)
def test_validation_refuses_a_verdict_without_a_check(src: V, dst: V) -> None:
    with pytest.raises(InvalidTransition):
        VALIDATION.check(src, dst)


def test_validation_has_no_final_state_because_any_verdict_can_be_rechecked() -> None:
    assert VALIDATION.terminal == frozenset()
