"""The alert state machine, as data (no database)."""

from __future__ import annotations

import pytest

from apps.alerts.domain.states import ALERT, OPEN, AlertState
from apps.core.domain.statemachine import InvalidTransition

A = AlertState


def test_a_new_alert_starts_pending() -> None:
    assert ALERT.initial == A.PENDING


@pytest.mark.parametrize(
    ("src", "dst"), [(A.PENDING, A.FIRING), (A.PENDING, A.RESOLVED), (A.FIRING, A.RESOLVED)]
)
def test_allowed_moves(src: AlertState, dst: AlertState) -> None:
    assert ALERT.can(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"), [(A.FIRING, A.PENDING), (A.RESOLVED, A.FIRING), (A.RESOLVED, A.PENDING)]
)
def test_forbidden_moves_raise_invalid_transition(src: AlertState, dst: AlertState) -> None:
    with pytest.raises(InvalidTransition):
        ALERT.check(src, dst)


def test_resolved_is_final() -> None:
    assert ALERT.terminal == {A.RESOLVED}


def test_open_alerts_are_the_pending_and_firing_ones() -> None:
    assert frozenset(AlertState) - ALERT.terminal == OPEN
