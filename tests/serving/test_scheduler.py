"""The placement scheduler: best fit, the cheapest eviction, and refusals an operator can act on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.serving.domain.eviction import GiB, Policy, Resident, clock_after, evictable, gdsf_priority
from apps.serving.domain.scheduler import (
    Decision,
    DeviceView,
    Refusal,
    Request,
    decide,
    free_bytes,
)

MiB = 1024**2
NOW = 1_000_000.0


def _device(
    device_id: int,
    *,
    capacity_gib: float = 80.0,
    placed_gib: float | None = None,
    reported_free_gib: float | None = None,
    node: str = "node-a",
    accepts: bool = True,
    why_not: str = "",
    residents: tuple[Resident, ...] = (),
    host_free_gib: float | None = None,
) -> DeviceView:
    """A device holding its residents (placed defaults to their sum) and reporting no telemetry yet;
    with `host_free_gib`, one that keeps weights in host memory (a CPU, a simulated GPU)."""
    placed = sum(r.size_bytes for r in residents) if placed_gib is None else int(placed_gib * GiB)
    return DeviceView(
        id=device_id,
        label=f"{node} gpu {device_id}",
        node=node,
        capacity_bytes=int(capacity_gib * GiB),
        placed_bytes=placed,
        reported_free_bytes=None if reported_free_gib is None else int(reported_free_gib * GiB),
        accepts=accepts,
        why_not=why_not,
        residents=residents,
        host_free_bytes=None if host_free_gib is None else int(host_free_gib * GiB),
    )


def _resident(
    placement_id: int,
    *,
    size_gib: float,
    version_id: int | None = None,
    age_s: float = 3600.0,
    idle_s: float = 60.0,
    uses: int = 1,
    load_seconds: float = 5.0,
    pinned: bool = False,
    busy: bool = False,
) -> Resident:
    size_bytes = int(size_gib * GiB)
    return Resident(
        placement_id=placement_id,
        version_id=placement_id if version_id is None else version_id,
        size_bytes=size_bytes,
        loaded_at=NOW - age_s,
        last_used=NOW - idle_s,
        uses=uses,
        load_seconds=load_seconds,
        pinned=pinned,
        busy=busy,
        priority=gdsf_priority(clock=0.0, uses=uses, load_seconds=load_seconds, size_bytes=size_bytes),
    )


def _need(gib: float, *, device_id: int | None = None, node: str | None = None) -> Request:
    return Request(version_id=999, need_bytes=int(gib * GiB), device_id=device_id, node=node)


def _decide(
    request: Request,
    devices: list[DeviceView],
    *,
    policy: Policy = Policy.GDSF,
    min_residency_s: float = 60.0,
) -> Decision | Refusal:
    return decide(request, devices, now=NOW, policy=policy, min_residency_s=min_residency_s)


# free_bytes


def test_free_bytes_is_capacity_minus_placed_when_nothing_is_reported() -> None:
    assert free_bytes(_device(1, capacity_gib=80, placed_gib=30)) == 50 * GiB


def test_free_bytes_trusts_a_lower_report_from_the_device() -> None:
    assert free_bytes(_device(1, capacity_gib=80, placed_gib=30, reported_free_gib=20)) == 20 * GiB


def test_free_bytes_ignores_a_report_that_still_shows_memory_moc_has_placed() -> None:
    assert free_bytes(_device(1, capacity_gib=80, placed_gib=30, reported_free_gib=75)) == 50 * GiB


def test_free_bytes_is_never_negative() -> None:
    assert free_bytes(_device(1, capacity_gib=40, placed_gib=48)) == 0


def test_free_bytes_of_a_host_memory_device_is_bounded_by_its_hosts_available_memory() -> None:
    assert free_bytes(_device(1, capacity_gib=11.75, placed_gib=1, host_free_gib=6)) == 6 * GiB


# decide: fitting without eviction


def test_decide_prefers_the_fullest_device_that_still_fits() -> None:
    devices = [_device(1, placed_gib=10), _device(2, placed_gib=60), _device(3, placed_gib=75)]

    assert _decide(_need(14), devices) == Decision(device_id=2, evict=(), free_after=6 * GiB)


def test_decide_breaks_equal_free_memory_by_the_lowest_device_id() -> None:
    devices = [_device(7, placed_gib=40), _device(3, placed_gib=40)]

    decision = _decide(_need(8), devices)

    assert isinstance(decision, Decision)
    assert decision.device_id == 3


def test_decide_judges_fit_by_the_lower_of_reported_and_booked_free_memory() -> None:
    devices = [_device(1, placed_gib=60, reported_free_gib=4), _device(2, placed_gib=50)]

    decision = _decide(_need(8), devices)

    assert isinstance(decision, Decision)
    assert decision.device_id == 2


def test_decide_puts_nothing_on_a_host_memory_device_whose_host_lacks_the_room() -> None:
    devices = [_device(1, capacity_gib=11.75, host_free_gib=5), _device(2, capacity_gib=24, placed_gib=10)]

    decision = _decide(_need(8), devices)

    assert isinstance(decision, Decision)
    assert decision.device_id == 2


def test_decide_evicts_on_a_host_memory_device_when_that_frees_enough_of_the_host() -> None:
    device = _device(1, capacity_gib=11.75, residents=(_resident(1, size_gib=4),), host_free_gib=5)

    decision = _decide(_need(8), [device])

    assert isinstance(decision, Decision)
    assert [v.placement_id for v in decision.evict] == [1]


def test_decide_skips_devices_that_do_not_accept_placements() -> None:
    devices = [_device(1, placed_gib=70, accepts=False, why_not="node offline"), _device(2)]

    decision = _decide(_need(8), devices)

    assert isinstance(decision, Decision)
    assert decision.device_id == 2


def test_decide_skips_devices_that_already_hold_the_version() -> None:
    holder = _device(1, capacity_gib=24, residents=(_resident(1, size_gib=8, version_id=999),))
    devices = [holder, _device(2)]

    decision = _decide(_need(8), devices)

    assert isinstance(decision, Decision)
    assert decision.device_id == 2


def test_decide_places_only_on_the_requested_device() -> None:
    devices = [_device(1, placed_gib=70), _device(2)]

    decision = _decide(_need(8, device_id=2), devices)

    assert isinstance(decision, Decision)
    assert decision.device_id == 2


def test_decide_places_only_on_devices_of_the_requested_node() -> None:
    devices = [_device(1, placed_gib=70), _device(2, node="node-b")]

    decision = _decide(_need(8, node="node-b"), devices)

    assert isinstance(decision, Decision)
    assert decision.device_id == 2


def test_decide_does_not_evict_when_another_device_fits() -> None:
    full = _device(1, capacity_gib=24, residents=(_resident(1, size_gib=24, uses=0),))
    devices = [full, _device(2, placed_gib=70)]

    assert _decide(_need(8), devices) == Decision(device_id=2, evict=(), free_after=2 * GiB)


# decide: eviction


def test_decide_evicts_to_make_room_when_nothing_fits() -> None:
    idle = _resident(1, size_gib=16)
    device = _device(1, capacity_gib=24, residents=(idle, _resident(2, size_gib=4)))

    assert _decide(_need(10), [device]) == Decision(device_id=1, evict=(idle,), free_after=10 * GiB)


def test_decide_under_gdsf_evicts_on_the_device_that_loses_the_least_reload_work() -> None:
    much_used = _resident(1, size_gib=20, uses=40, load_seconds=20)
    little_used = _resident(2, size_gib=20, uses=2, load_seconds=20)
    devices = [
        _device(1, capacity_gib=24, residents=(much_used,)),
        _device(2, capacity_gib=24, residents=(little_used,)),
    ]

    decision = _decide(_need(10), devices)

    assert isinstance(decision, Decision)
    assert decision.evict == (little_used,)


def test_decide_under_lru_evicts_on_the_device_whose_victims_were_idle_longest() -> None:
    # The long-idle model was used far more; LRU does not care.
    long_idle = _resident(1, size_gib=20, uses=40, idle_s=3000)
    recent = _resident(2, size_gib=20, uses=2, idle_s=100)
    devices = [
        _device(1, capacity_gib=24, residents=(recent,)),
        _device(2, capacity_gib=24, residents=(long_idle,)),
    ]

    decision = _decide(_need(10), devices, policy=Policy.LRU)

    assert isinstance(decision, Decision)
    assert decision.evict == (long_idle,)


def test_decide_breaks_equal_losses_by_fewer_bytes_evicted() -> None:
    big = _resident(1, size_gib=20, uses=1, load_seconds=10)
    small = _resident(2, size_gib=12, uses=1, load_seconds=10)
    devices = [_device(1, capacity_gib=24, residents=(big,)), _device(2, capacity_gib=24, residents=(small,))]

    decision = _decide(_need(14), devices)

    assert decision == Decision(device_id=2, evict=(small,), free_after=10 * GiB)


def test_decide_counts_reported_free_memory_when_evicting() -> None:
    # Something outside MOC holds 6 GiB: evicting 8 GiB leaves only 10 GiB free, not 16.
    victim = _resident(1, size_gib=8, uses=1)
    other = _resident(2, size_gib=8, uses=9)
    device = _device(1, capacity_gib=24, reported_free_gib=2, residents=(victim, other))

    decision = _decide(_need(12), [device])

    assert decision == Decision(device_id=1, evict=(victim, other), free_after=6 * GiB)


def test_decide_evicts_enough_to_cover_what_an_overcommitted_device_already_owes() -> None:
    # Capacity was lowered under it: 26 GiB placed on 24, so freeing 12 GiB leaves only 10.
    first, second = _resident(1, size_gib=13), _resident(2, size_gib=13, uses=5)
    device = _device(1, capacity_gib=24, residents=(first, second))

    decision = _decide(_need(12), [device])

    assert decision == Decision(device_id=1, evict=(first, second), free_after=12 * GiB)


def test_decide_never_evicts_residents_younger_than_the_churn_floor() -> None:
    young = _resident(1, size_gib=20, uses=0, age_s=30)
    old = _resident(2, size_gib=20, uses=50, age_s=3600)
    devices = [_device(1, capacity_gib=24, residents=(young,)), _device(2, capacity_gib=24, residents=(old,))]

    decision = _decide(_need(10), devices, min_residency_s=60.0)

    assert isinstance(decision, Decision)
    assert decision.evict == (old,)


def test_decide_never_evicts_pinned_or_busy_residents() -> None:
    devices = [
        _device(1, capacity_gib=24, residents=(_resident(1, size_gib=20, uses=0, pinned=True),)),
        _device(2, capacity_gib=24, residents=(_resident(2, size_gib=20, uses=0, busy=True),)),
    ]

    assert isinstance(_decide(_need(10), devices), Refusal)


# decide: refusals


def test_decide_refuses_with_the_most_that_eviction_could_free() -> None:
    devices = [
        _device(
            1, capacity_gib=24, residents=(_resident(1, size_gib=12, pinned=True), _resident(2, size_gib=6))
        ),
        _device(2, capacity_gib=24, residents=(_resident(3, size_gib=14.4, busy=True),)),
    ]

    refusal = _decide(_need(14.2), devices)

    assert refusal == Refusal("needs 14.2 GiB; the most that eviction can free is 12.0 GiB, on node-a gpu 1")


def test_decide_refuses_without_counting_residents_the_churn_floor_protects() -> None:
    device = _device(1, capacity_gib=24, placed_gib=23.5, residents=(_resident(1, size_gib=23.5, age_s=5),))

    refusal = _decide(_need(1), [device], min_residency_s=60.0)

    assert refusal == Refusal("needs 1.0 GiB; the most that eviction can free is 512.0 MiB, on node-a gpu 1")


def test_decide_refuses_counting_what_an_overcommitted_device_already_owes() -> None:
    residents = (_resident(1, size_gib=4, pinned=True), _resident(2, size_gib=22))
    device = _device(1, capacity_gib=24, residents=residents)

    refusal = _decide(_need(21), [device])

    assert refusal == Refusal("needs 21.0 GiB; the most that eviction can free is 20.0 GiB, on node-a gpu 1")


def test_decide_refuses_a_model_larger_than_every_device_naming_the_largest() -> None:
    devices = [_device(1, capacity_gib=24), _device(2, capacity_gib=48), _device(3, capacity_gib=40)]

    refusal = _decide(_need(60), devices)

    assert refusal == Refusal("needs 60.0 GiB; the largest device, node-a gpu 2, offers 48.0 GiB")


def test_decide_refuses_a_model_larger_than_a_host_capped_simulated_gpu_saying_what_it_offers() -> None:
    # The host: 23.5 GiB of RAM, so an 80 GiB simulated GPU offers half of that.
    device = _device(1, capacity_gib=11.75, host_free_gib=20)

    refusal = _decide(_need(24.5), [device])

    assert refusal == Refusal("needs 24.5 GiB; the largest device, node-a gpu 1, offers 11.8 GiB")


def test_decide_refuses_naming_the_host_when_its_available_memory_is_what_binds() -> None:
    device = _device(1, capacity_gib=11.75, host_free_gib=5)

    refusal = _decide(_need(8), [device])

    assert refusal == Refusal(
        "needs 8.0 GiB; node-a gpu 1 keeps its weights in host memory, and its host has 5.0 GiB available"
    )


def test_decide_refusing_for_the_host_counts_what_eviction_could_free() -> None:
    device = _device(1, capacity_gib=11.75, residents=(_resident(1, size_gib=2),), host_free_gib=5)

    refusal = _decide(_need(8), [device])

    assert refusal == Refusal(
        "needs 8.0 GiB; node-a gpu 1 keeps its weights in host memory, and its host has 5.0 GiB available"
        " (7.0 GiB with what eviction could free)"
    )


def test_decide_refuses_a_device_that_does_not_accept_and_says_why() -> None:
    devices = [_device(1, accepts=False, why_not="unhealthy: uncorrectable ECC"), _device(2)]

    refusal = _decide(_need(8, device_id=1), devices)

    assert refusal == Refusal("node-a gpu 1 does not accept placements: unhealthy: uncorrectable ECC")


def test_decide_refuses_a_node_whose_devices_all_refuse_naming_each() -> None:
    devices = [
        _device(1, node="node-b", accepts=False, why_not="node offline"),
        _device(2, node="node-b", accepts=False, why_not="node offline"),
        _device(3),
    ]

    refusal = _decide(_need(8, node="node-b"), devices)

    assert refusal == Refusal(
        "no device on node node-b accepts placements: "
        "node-b gpu 1 (node offline), node-b gpu 2 (node offline)"
    )


def test_decide_refuses_an_unknown_device() -> None:
    assert _decide(_need(8, device_id=9), [_device(1)]) == Refusal("no device has id 9")


def test_decide_refuses_a_node_with_no_devices() -> None:
    assert _decide(_need(8, node="node-z"), [_device(1)]) == Refusal("node node-z has no devices")


def test_decide_refuses_a_device_that_is_not_on_the_requested_node() -> None:
    refusal = _decide(_need(8, device_id=1, node="node-b"), [_device(1)])

    assert refusal == Refusal("node-a gpu 1 is not on node node-b")


def test_decide_refuses_a_version_every_candidate_already_holds() -> None:
    holder = _device(4, residents=(_resident(1, size_gib=8, version_id=999),))

    assert _decide(_need(8), [holder]) == Refusal("version 999 is already loaded on node-a gpu 4")


def test_decide_refuses_when_no_devices_are_registered() -> None:
    assert _decide(_need(8), []) == Refusal("no devices are registered")


# Property tests: random loads, uses, unloads and ticks on a simulated fleet.


@dataclass
class SimDevice:
    """A device of the simulated fleet; `reserved` stands for running jobs' reservations."""

    id: int
    node: str
    capacity: int
    reserved: int
    report_lag: int | None  # reported free = capacity - placed + lag; None: no telemetry
    accepts: bool
    residents: list[Resident] = field(default_factory=list)
    clock: float = 0.0

    @property
    def placed(self) -> int:
        return self.reserved + sum(r.size_bytes for r in self.residents)

    def view(self) -> DeviceView:
        reported = None if self.report_lag is None else max(0, self.capacity - self.placed + self.report_lag)
        return DeviceView(
            id=self.id,
            label=f"{self.node} gpu {self.id}",
            node=self.node,
            capacity_bytes=self.capacity,
            placed_bytes=self.placed,
            reported_free_bytes=reported,
            accepts=self.accepts,
            why_not="" if self.accepts else "node offline",
            residents=tuple(self.residents),
            clock=self.clock,
        )


@dataclass(frozen=True)
class Step:
    """What a test sees of one load: the request, the fleet before it, and the answer."""

    request: Request
    before: list[DeviceView]
    now: float
    result: Decision | Refusal
    after: list[DeviceView]


DEVICES = st.lists(
    st.builds(
        SimDevice,
        id=st.just(0),  # _simulate numbers them 1, 2, ...
        node=st.sampled_from(["node-a", "node-b"]),
        capacity=st.sampled_from([8, 24, 48, 80]).map(lambda gib: gib * GiB),
        reserved=st.sampled_from([0, 0, 2 * GiB]),
        report_lag=st.one_of(st.none(), st.sampled_from([-3 * GiB, -GiB // 2, 0, 4 * GiB])),
        accepts=st.sampled_from([True, True, True, False]),
    ),
    min_size=1,
    max_size=4,
)


@dataclass(frozen=True)
class Op:
    """One event on the fleet; a load uses version, need, scope and pick, the others only what they name."""

    kind: str  # load, tick, use, unload, flag
    version: int
    need: int
    scope: str  # any, device, node: which devices a load may use
    pick: int  # which device (scoped load) or which resident (use, unload, flag)
    seconds: float
    flag: str  # pinned or busy


# Loads and ticks weigh the most, so devices fill up with residents old enough to evict.
OPS = st.lists(
    st.builds(
        Op,
        kind=st.sampled_from(["load", "load", "load", "load", "tick", "tick", "use", "unload", "flag"]),
        version=st.integers(min_value=1, max_value=40),
        need=st.integers(min_value=1, max_value=60).map(lambda halves: halves * GiB // 2),
        scope=st.sampled_from(["any", "any", "any", "device", "node"]),
        pick=st.integers(min_value=0, max_value=50),
        seconds=st.floats(min_value=0.0, max_value=120.0),
        flag=st.sampled_from(["pinned", "busy"]),
    ),
    min_size=10,
    max_size=60,
)

FLEET_SETTINGS = settings(max_examples=150, deadline=None, database=None)


def _simulate(devices: list[SimDevice], ops: list[Op], policy: Policy, min_residency_s: float) -> list[Step]:
    """Run `ops` on the fleet as MOC's services would: decide(), then apply the Decision, move the clock."""
    for number, device in enumerate(devices, start=1):
        device.id = number
    now = NOW
    next_placement = 1
    steps: list[Step] = []

    def everyone() -> list[tuple[SimDevice, int]]:
        return [(d, i) for d in devices for i in range(len(d.residents))]

    for op in ops:
        if op.kind == "tick":
            now += op.seconds
            continue
        if op.kind in ("use", "unload", "flag"):
            residents = everyone()
            if not residents:
                continue
            device, index = residents[op.pick % len(residents)]
            r = device.residents[index]
            if op.kind == "unload":
                del device.residents[index]
            elif op.kind == "flag":
                device.residents[index] = replace(r, **{op.flag: not getattr(r, op.flag)})
            else:
                priority = gdsf_priority(
                    clock=device.clock, uses=r.uses + 1, load_seconds=r.load_seconds, size_bytes=r.size_bytes
                )
                device.residents[index] = replace(r, uses=r.uses + 1, last_used=now, priority=priority)
            continue
        target = devices[op.pick % len(devices)]
        request = Request(
            version_id=op.version,
            need_bytes=op.need,
            device_id=target.id if op.scope == "device" else None,
            node=target.node if op.scope == "node" else None,
        )
        before = [d.view() for d in devices]
        result = decide(request, before, now=now, policy=policy, min_residency_s=min_residency_s)
        if isinstance(result, Decision):
            device = next(d for d in devices if d.id == result.device_id)
            gone = {v.placement_id for v in result.evict}
            device.residents = [r for r in device.residents if r.placement_id not in gone]
            device.clock = clock_after(device.clock, result.evict)
            need, load_seconds = op.need, 1.0 + op.need / GiB
            device.residents.append(
                Resident(
                    placement_id=next_placement,
                    version_id=op.version,
                    size_bytes=need,
                    loaded_at=now,
                    last_used=now,
                    uses=1,
                    load_seconds=load_seconds,
                    priority=gdsf_priority(
                        clock=device.clock, uses=1, load_seconds=load_seconds, size_bytes=need
                    ),
                )
            )
            next_placement += 1
        steps.append(Step(request, before, now, result, [d.view() for d in devices]))
    return steps


def _candidates(step: Step) -> list[DeviceView]:
    request = step.request
    return [
        d
        for d in step.before
        if d.accepts
        and (request.device_id is None or d.id == request.device_id)
        and (request.node is None or d.node == request.node)
        and all(r.version_id != request.version_id for r in d.residents)
    ]


def _room(device: DeviceView) -> int:
    """Room before any floor: what MOC's books and the device's report both allow."""
    room = device.capacity_bytes - device.placed_bytes
    return room if device.reported_free_bytes is None else min(room, device.reported_free_bytes)


@FLEET_SETTINGS
@given(devices=DEVICES, ops=OPS, policy=st.sampled_from(Policy), floor=st.sampled_from([0.0, 60.0]))
def test_random_loads_never_place_more_than_a_device_can_hold(
    devices: list[SimDevice], ops: list[Op], policy: Policy, floor: float
) -> None:
    steps = _simulate(devices, ops, policy, floor)

    for step in steps:
        if isinstance(step.result, Decision):
            chosen = next(d for d in step.after if d.id == step.result.device_id)
            assert chosen.placed_bytes <= chosen.capacity_bytes
            assert step.result.free_after == _room(chosen)


@FLEET_SETTINGS
@given(devices=DEVICES, ops=OPS, policy=st.sampled_from(Policy), floor=st.sampled_from([0.0, 60.0]))
def test_random_loads_never_evict_pinned_busy_or_too_young_residents(
    devices: list[SimDevice], ops: list[Op], policy: Policy, floor: float
) -> None:
    steps = _simulate(devices, ops, policy, floor)

    for step in steps:
        if isinstance(step.result, Decision):
            chosen = next(d for d in step.before if d.id == step.result.device_id)
            for victim in step.result.evict:
                assert victim in chosen.residents
                assert evictable(victim, now=step.now, min_residency_s=floor)


@FLEET_SETTINGS
@given(devices=DEVICES, ops=OPS, policy=st.sampled_from(Policy), floor=st.sampled_from([0.0, 60.0]))
def test_random_loads_go_only_to_candidates_and_evict_only_when_none_fits(
    devices: list[SimDevice], ops: list[Op], policy: Policy, floor: float
) -> None:
    steps = _simulate(devices, ops, policy, floor)

    for step in steps:
        if isinstance(step.result, Decision):
            candidates = _candidates(step)
            assert step.result.device_id in {d.id for d in candidates}
            fits = any(_room(d) >= step.request.need_bytes for d in candidates)
            assert fits == (step.result.evict == ())


@FLEET_SETTINGS
@given(devices=DEVICES, ops=OPS, policy=st.sampled_from(Policy), floor=st.sampled_from([0.0, 60.0]))
def test_random_loads_are_refused_only_when_no_candidate_could_make_room(
    devices: list[SimDevice], ops: list[Op], policy: Policy, floor: float
) -> None:
    steps = _simulate(devices, ops, policy, floor)

    for step in steps:
        if isinstance(step.result, Refusal):
            for device in _candidates(step):
                evictable_bytes = sum(
                    r.size_bytes
                    for r in device.residents
                    if evictable(r, now=step.now, min_residency_s=floor)
                )
                assert _room(device) + evictable_bytes < step.request.need_bytes
