"""The generic StateMachine, core's DELIVERY machine, and transition() against a real row."""

from __future__ import annotations

from enum import StrEnum

import pytest

from apps.core.domain.statemachine import InvalidTransition, StateMachine
from apps.core.domain.states import DELIVERY, DeliveryState
from apps.core.models import TaskDelivery
from apps.core.transitions import transition
from tests.core.factories import TaskDeliveryFactory


class Light(StrEnum):
    RED = "red"
    GREEN = "green"
    AMBER = "amber"
    BROKEN_DOWN = "broken_down"


class Other(StrEnum):
    BLUE = "blue"


LIGHT = StateMachine(
    "traffic light",
    Light,
    initial=Light.RED,
    transitions={
        Light.RED: {Light.GREEN, Light.BROKEN_DOWN},
        Light.GREEN: {Light.AMBER, Light.BROKEN_DOWN},
        Light.AMBER: {Light.RED, Light.BROKEN_DOWN},
    },
)


def test_machine_naming_an_unknown_state_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="traffic light: transitions name unknown states") as caught:
        StateMachine("traffic light", Light, initial=Light.RED, transitions={Light.RED: {Other.BLUE}})

    assert "blue" in str(caught.value)


def test_machine_with_an_unknown_source_state_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown states"):
        StateMachine("traffic light", Light, initial=Light.RED, transitions={Other.BLUE: {Light.RED}})


@pytest.mark.parametrize(
    ("src", "dst", "expected"),
    [
        ("red", "green", True),
        ("green", "amber", True),
        ("red", "amber", False),
        ("broken_down", "red", False),
    ],
)
def test_can_allows_only_declared_moves(src: str, dst: str, expected: bool) -> None:
    assert LIGHT.can(src, dst) is expected


def test_can_refuses_moves_from_a_state_the_machine_does_not_know() -> None:
    assert LIGHT.can("purple", "red") is False


def test_check_passes_silently_for_an_allowed_move() -> None:
    LIGHT.check("amber", "red")


def test_check_raises_invalid_transition_for_a_forbidden_move() -> None:
    with pytest.raises(InvalidTransition) as caught:
        LIGHT.check("red", "amber")

    assert (caught.value.machine, caught.value.src, caught.value.dst) == ("traffic light", "red", "amber")


def test_invalid_transition_message_names_both_states_and_the_allowed_ones() -> None:
    with pytest.raises(InvalidTransition) as caught:
        LIGHT.check("red", "amber")

    assert str(caught.value) == (
        "traffic light cannot go from 'red' to 'amber'; from 'red' it can go to broken_down, green"
    )


def test_invalid_transition_message_says_a_terminal_state_is_final() -> None:
    with pytest.raises(InvalidTransition, match=r"it can go to nothing \(it is final\)"):
        LIGHT.check("broken_down", "red")


def test_allowed_lists_the_next_states() -> None:
    assert LIGHT.allowed("green") == frozenset({"amber", "broken_down"})


def test_sources_lists_the_states_a_state_is_reached_from() -> None:
    assert LIGHT.sources("broken_down") == frozenset({"red", "green", "amber"})
    assert LIGHT.sources("red") == frozenset({"amber"})


def test_terminal_states_are_those_with_no_way_out() -> None:
    assert LIGHT.terminal == frozenset({"broken_down"})


def test_choices_cover_every_state_with_a_readable_label() -> None:
    assert LIGHT.choices == [
        ("red", "Red"),
        ("green", "Green"),
        ("amber", "Amber"),
        ("broken_down", "Broken down"),
    ]


def test_delivery_starts_running() -> None:
    assert DELIVERY.initial == DeliveryState.RUNNING


def test_delivery_redelivery_of_a_running_task_is_allowed() -> None:
    assert DELIVERY.can("running", "running")


def test_delivery_retrying_task_can_only_run_again() -> None:
    assert DELIVERY.allowed("retrying") == frozenset({"running"})


def test_delivery_finished_states_are_terminal() -> None:
    assert DELIVERY.terminal == frozenset({"succeeded", "failed", "poisoned"})


def test_delivery_can_be_poisoned_only_while_running_or_lost_with_its_worker() -> None:
    assert DELIVERY.sources("poisoned") == frozenset({"running", "lost"})


@pytest.mark.django_db
def test_transition_moves_the_row_when_allowed() -> None:
    row = TaskDeliveryFactory(state=DeliveryState.RUNNING)

    moved = transition(row, DeliveryState.FAILED, machine=DELIVERY, error="ValueError: boom")

    assert moved is True
    assert (row.state, row.error) == ("failed", "ValueError: boom")
    stored = TaskDelivery.objects.get(pk=row.pk)
    assert (stored.state, stored.error) == ("failed", "ValueError: boom")


@pytest.mark.django_db
def test_transition_returns_false_when_another_writer_moved_the_row_first() -> None:
    row = TaskDeliveryFactory(state=DeliveryState.RUNNING)
    TaskDelivery.objects.filter(pk=row.pk).update(state=DeliveryState.SUCCEEDED)

    moved = transition(row, DeliveryState.FAILED, machine=DELIVERY, error="late")

    assert moved is False
    assert row.state == "running"
    stored = TaskDelivery.objects.get(pk=row.pk)
    assert (stored.state, stored.error) == ("succeeded", "")


@pytest.mark.django_db
def test_transition_raises_for_a_forbidden_move_and_leaves_the_row() -> None:
    row = TaskDeliveryFactory(state=DeliveryState.SUCCEEDED)

    with pytest.raises(InvalidTransition, match="from 'succeeded' to 'running'"):
        transition(row, DeliveryState.RUNNING, machine=DELIVERY)

    assert TaskDelivery.objects.get(pk=row.pk).state == "succeeded"
