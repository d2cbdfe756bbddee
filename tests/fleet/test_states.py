import pytest

from apps.core.domain.queues import DEVICE_KINDS, device_queue, parse_device_queue
from apps.core.domain.statemachine import InvalidTransition
from apps.fleet.domain.kinds import DeviceKind
from apps.fleet.domain.states import DEVICE_HEALTH, NODE, DeviceHealth, NodeState
from apps.serving.domain.states import PLACEMENT, PLACEMENT_ACTIVE, PlacementState

N, H, P = NodeState, DeviceHealth, PlacementState

NODE_MOVES = [
    (N.ONLINE, N.DRAINING),
    (N.ONLINE, N.OFFLINE),
    (N.DRAINING, N.ONLINE),
    (N.DRAINING, N.OFFLINE),
    (N.OFFLINE, N.ONLINE),
]
HEALTH_MOVES = [
    (H.HEALTHY, H.DEGRADED),
    (H.HEALTHY, H.UNHEALTHY),
    (H.HEALTHY, H.UNAVAILABLE),
    (H.DEGRADED, H.HEALTHY),
    (H.DEGRADED, H.UNHEALTHY),
    (H.DEGRADED, H.UNAVAILABLE),
    (H.UNHEALTHY, H.DEGRADED),
    (H.UNHEALTHY, H.UNAVAILABLE),
    (H.UNAVAILABLE, H.HEALTHY),
    (H.UNAVAILABLE, H.DEGRADED),
    (H.UNAVAILABLE, H.UNHEALTHY),
]
PLACEMENT_MOVES = [
    (P.REQUESTED, P.LOADING),
    (P.REQUESTED, P.UNLOADED),
    (P.REQUESTED, P.FAILED),
    (P.REQUESTED, P.LOST),
    (P.LOADING, P.LOADED),
    (P.LOADING, P.UNLOADING),  # unloaded while it loads: the worker frees it once the load ends
    (P.LOADING, P.FAILED),
    (P.LOADING, P.LOST),
    (P.LOADED, P.UNLOADING),
    (P.LOADED, P.FAILED),
    (P.LOADED, P.LOST),
    (P.UNLOADING, P.UNLOADED),
    (P.UNLOADING, P.FAILED),
    (P.UNLOADING, P.LOST),
]


def _every_move(machine: object, states: type) -> set[tuple[str, str]]:
    return {(src.value, dst) for src in states for dst in machine.allowed(src)}


def test_a_node_starts_online() -> None:
    assert NODE.initial == N.ONLINE


def test_node_allows_exactly_the_documented_moves() -> None:
    assert _every_move(NODE, N) == {(a.value, b.value) for a, b in NODE_MOVES}


@pytest.mark.parametrize(("src", "dst"), [(N.OFFLINE, N.DRAINING), (N.ONLINE, N.ONLINE)])
def test_node_refuses_other_moves(src: N, dst: N) -> None:
    with pytest.raises(InvalidTransition):
        NODE.check(src, dst)


def test_a_device_starts_healthy() -> None:
    assert DEVICE_HEALTH.initial == H.HEALTHY


def test_device_health_allows_exactly_the_documented_moves() -> None:
    assert _every_move(DEVICE_HEALTH, H) == {(a.value, b.value) for a, b in HEALTH_MOVES}


def test_an_unhealthy_device_cannot_become_healthy_without_passing_degraded() -> None:
    with pytest.raises(InvalidTransition, match="degraded"):
        DEVICE_HEALTH.check(H.UNHEALTHY, H.HEALTHY)


def test_a_placement_starts_requested() -> None:
    assert PLACEMENT.initial == P.REQUESTED


@pytest.mark.parametrize(("src", "dst"), PLACEMENT_MOVES)
def test_placement_allows_the_documented_move(src: P, dst: P) -> None:
    assert PLACEMENT.can(src, dst)


def test_placement_allows_nothing_else() -> None:
    assert _every_move(PLACEMENT, P) == {(a.value, b.value) for a, b in PLACEMENT_MOVES}


@pytest.mark.parametrize(
    ("src", "dst"),
    [(P.REQUESTED, P.LOADED), (P.LOADING, P.UNLOADED), (P.LOADED, P.LOADING), (P.LOADED, P.UNLOADED)],
)
def test_placement_refuses_skipping_or_going_back(src: P, dst: P) -> None:
    with pytest.raises(InvalidTransition):
        PLACEMENT.check(src, dst)


def test_unloaded_failed_and_lost_are_the_final_placement_states() -> None:
    assert PLACEMENT.terminal == {P.UNLOADED.value, P.FAILED.value, P.LOST.value}


@pytest.mark.parametrize("src", [P.UNLOADED, P.FAILED, P.LOST])
def test_a_final_placement_goes_nowhere(src: P) -> None:
    with pytest.raises(InvalidTransition, match="final"):
        PLACEMENT.check(src, P.REQUESTED)


def test_the_active_placement_states_are_exactly_the_non_final_ones() -> None:
    assert {s.value for s in P} - PLACEMENT.terminal == PLACEMENT_ACTIVE


def test_every_kind_of_device_has_a_queue_name_that_parses() -> None:
    assert {k.value for k in DeviceKind} == DEVICE_KINDS
    for kind in DeviceKind:
        assert parse_device_queue(device_queue(kind.value, "n1", 3)) == (kind.value, "n1", 3)
