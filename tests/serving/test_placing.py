"""Placing versions on devices with the real database: choosing, refusing, evicting, adapters,
keep-alive, preloading and the reaper. Tasks are not run: the messages sent on commit are
caught and looked at."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core import dispatch
from apps.core.redis_clients import redis_client
from apps.core.workers import beat
from apps.fleet import telemetry
from apps.fleet.domain.kinds import Backend
from apps.fleet.domain.states import DeviceHealth, NodeState
from apps.jobs.domain.states import JobState
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import messages, placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement, ServingProfile
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory
from tests.jobs.factories import JobFactory
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory
from tests.serving.invariants import reserved_within_capacity

pytestmark = pytest.mark.django_db
P = PlacementState


SHORT = {messages.PLACEMENT_LOAD: "placement_load", messages.PLACEMENT_UNLOAD: "placement_unload"}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, str]]:
    """(task, placement id, queue) of every placement task sent."""
    found: list[tuple[str, int, str]] = []

    def send(name: str, *, args: Any = (), queue: str = "", **_: Any) -> None:
        found.append((SHORT[name], list(args)[0], queue))

    monkeypatch.setattr(dispatch, "send", send)
    return found


def lm(size_gib: float = 10, **fields: Any) -> Any:
    fields = {"validation_state": ValidationState.VALID, **fields}
    return ModelVersionFactory(
        format=ModelFormat.HF, kind="causal-lm", estimated_vram_bytes=int(size_gib * GIB), **fields
    )


def device(capacity_gib: float = 24, **fields: Any) -> Any:
    return DeviceFactory(capacity_bytes=int(capacity_gib * GIB), **fields)


def reports_free(gpu: Any, free_bytes: int, *, host_free_bytes: int | None = None) -> None:
    """The device's latest telemetry, as its node's sampler would publish it."""
    message = telemetry.telemetry_message(
        node=gpu.node.name,
        node_id=gpu.node.pk,
        at=time.time(),
        backend=gpu.node.backend,
        devices=[{"id": gpu.pk, "mem_free_bytes": free_bytes, "host_free_bytes": host_free_bytes}],
    )
    telemetry.publish(redis_client(), message)


def simulated(capacity_gib: float = 11.75, **fields: Any) -> Any:
    """A simulated GPU: its models live in its host's RAM."""
    node = fields.pop("node", None) or NodeFactory(backend=Backend.SIM)
    return device(capacity_gib, node=node, simulated=True, name="Simulated GPU 80 GiB", **fields)


def resident(version: Any, on: Any, *, idle_s: float = 3600, **fields: Any) -> Placement:
    long_ago = timezone.now() - timedelta(seconds=idle_s)
    return PlacementFactory(
        version=version,
        device=on,
        state=P.LOADED,
        reserved_bytes=version.estimated_vram_bytes,
        loaded_at=long_ago,
        last_used_at=long_ago,
        **fields,
    )


def test_load_puts_the_version_on_the_fullest_device_that_fits_and_sends_the_load_there(
    sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    roomy, snug = device(80), device(24)
    version = lm(10)

    with django_capture_on_commit_callbacks(execute=True):
        placement = placing.placement_load(version=version)

    assert placement.device == snug
    assert placement.state == P.REQUESTED
    assert placement.reserved_bytes == 10 * GIB
    assert sent == [("placement_load", placement.pk, snug.queue)]
    assert roomy.placements.count() == 0


def test_load_returns_the_active_placement_a_version_already_has() -> None:
    version = lm(10)
    existing = resident(version, device(24))

    assert placing.placement_load(version=version) == existing


def test_load_reserves_what_the_last_measured_load_took_rather_than_the_estimate(sent: list) -> None:
    version = lm(10)
    done = resident(version, device(24), measured_bytes=3 * GIB)
    Placement.objects.filter(pk=done.pk).update(state=P.UNLOADED)

    placement = placing.placement_load(version=version)

    assert placement.reserved_bytes == 3 * GIB


def test_load_refuses_with_the_most_that_eviction_could_free(sent: list) -> None:
    gpu = device(24, node=NodeFactory(name="node-a"), index=1)
    resident(lm(10), gpu, pinned=True)

    with pytest.raises(placing.PlacementRefused) as refused:
        placing.placement_load(version=lm(20))

    assert "needs 20.0 GiB" in str(refused.value)
    assert "node-a gpu 1" in str(refused.value)
    assert not Placement.objects.filter(state=P.REQUESTED).exists()


def test_load_evicts_an_idle_placement_which_unloads_before_the_new_one_loads(
    sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    gpu = device(24)
    victim = resident(lm(16), gpu)

    with django_capture_on_commit_callbacks(execute=True):
        placement = placing.placement_load(version=lm(16))

    victim.refresh_from_db()
    assert victim.state == P.UNLOADING
    assert victim.displaced_by == placement
    assert "evicted to make room" in victim.end_reason
    assert [name for name, _, _ in sent] == ["placement_unload", "placement_load"]
    assert reserved_within_capacity(gpu)


def test_load_never_evicts_a_placement_that_served_a_request_moments_ago(sent: list) -> None:
    gpu = device(24)
    resident(lm(16), gpu, idle_s=1)

    with pytest.raises(placing.PlacementRefused):
        placing.placement_load(version=lm(16))


def test_load_counts_the_memory_running_jobs_reserved(sent: list) -> None:
    gpu = device(24)
    JobFactory(device=gpu, state=JobState.RUNNING, reserved_bytes=20 * GIB)

    with pytest.raises(placing.PlacementRefused):
        placing.placement_load(version=lm(10), device=gpu)


def test_load_believes_the_device_when_it_reports_less_free_than_moc_placed(sent: list) -> None:
    gpu = device(24)
    reports_free(gpu, 5 * GIB)

    with pytest.raises(placing.PlacementRefused):
        placing.placement_load(version=lm(10), device=gpu)


def test_load_skips_unhealthy_devices_and_offline_nodes(sent: list) -> None:
    device(80, health=DeviceHealth.UNHEALTHY)
    device(80, node=NodeFactory(state=NodeState.OFFLINE))
    healthy = device(24)

    assert placing.placement_load(version=lm(10)).device == healthy


def test_load_refuses_an_invalid_version_naming_why() -> None:
    device(80)
    version = lm(1, validation_state=ValidationState.INVALID, validation_error="header runs past the file")

    with pytest.raises(ValidationError, match="header runs past the file"):
        placing.placement_load(version=version)


def test_load_refuses_a_version_moc_cannot_serve() -> None:
    device(80)
    version = ModelVersionFactory(format=ModelFormat.SAFETENSORS, kind="", estimated_vram_bytes=GIB)

    with pytest.raises(ValidationError, match="cannot serve"):
        placing.placement_load(version=version)


def test_an_adapter_brings_its_base_first_onto_the_same_device(sent: list) -> None:
    device(80)
    base = lm(10)
    adapter = ModelVersionFactory(
        format=ModelFormat.HF, kind="adapter", parent=base, estimated_vram_bytes=GIB // 10
    )

    placement = placing.placement_load(version=adapter)

    base_placement = placement.depends_on
    assert base_placement is not None
    assert base_placement.version == base
    assert base_placement.device == placement.device
    assert [name for name, _, _ in sent] == []  # nothing is sent before the transaction commits


def test_an_adapter_finds_its_base_by_the_path_its_config_names(sent: list) -> None:
    device(80)
    base = lm(10, path="/srv/models/base")
    adapter = ModelVersionFactory(
        format=ModelFormat.HF,
        kind="adapter",
        estimated_vram_bytes=GIB // 10,
        metadata={"adapter": {"base_model_name_or_path": "/srv/models/base/"}},
    )

    assert placing.placement_load(version=adapter).depends_on.version == base


def test_unloading_a_base_unloads_the_adapters_built_on_it(sent: list) -> None:
    gpu = device(80)
    base = resident(lm(10), gpu)
    adapter = PlacementFactory(device=gpu, state=P.LOADED, depends_on=base)

    assert placing.placement_unload(placement=base, reason="asked")

    adapter.refresh_from_db()
    assert adapter.state == P.UNLOADING
    assert "its base was unloaded" in adapter.end_reason


def test_unloading_a_request_no_worker_took_cancels_it(sent: list) -> None:
    placement = PlacementFactory(state=P.REQUESTED)

    assert placing.placement_unload(placement=placement, reason="asked")

    placement.refresh_from_db()
    assert placement.state == P.UNLOADED
    assert sent == []


def test_keep_alive_unloads_idle_placements_but_not_pinned_ones_or_bases_in_use(sent: list) -> None:
    gpu = device(80)
    idle = resident(lm(1), gpu, keep_alive_s=60, idle_s=120)
    pinned = resident(lm(1), gpu, keep_alive_s=60, idle_s=120, pinned=True)
    fresh = resident(lm(1), gpu, keep_alive_s=600, idle_s=120)
    base = resident(lm(1), gpu, keep_alive_s=60, idle_s=120)
    PlacementFactory(
        device=gpu, state=P.LOADED, depends_on=base, keep_alive_s=600, last_used_at=timezone.now()
    )

    assert placing.placements_expire_idle() == 1

    states = {p.pk: Placement.objects.get(pk=p.pk).state for p in (idle, pinned, fresh, base)}
    assert states == {idle.pk: P.UNLOADING, pinned.pk: P.LOADED, fresh.pk: P.LOADED, base.pk: P.LOADED}


def test_the_reaper_marks_placements_lost_whose_worker_is_gone() -> None:
    gpu = device(80)
    orphan = PlacementFactory(device=gpu, state=P.LOADING)
    Placement.objects.filter(pk=orphan.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    served = device(80)
    alive = PlacementFactory(device=served, state=P.LOADING)
    Placement.objects.filter(pk=alive.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    beat(redis_client(), "w@host", [served.queue], time.time())
    beat(redis_client(), "default@host", ["default"], time.time())  # the reaper's own worker

    assert placing.placements_reconcile() == {"lost": 1, "failed": 0, "unloads_resent": 0}

    orphan.refresh_from_db()
    assert orphan.state == P.LOST
    assert gpu.queue in orphan.error
    assert Placement.objects.get(pk=alive.pk).state == P.LOADING


def test_the_reaper_fails_requests_no_worker_took_in_time(settings: Any) -> None:
    settings.MOC_PLACEMENT_REQUEST_TIMEOUT_S = 60
    stale = PlacementFactory(state=P.REQUESTED)
    five_minutes_ago = timezone.now() - timedelta(minutes=5)
    Placement.objects.filter(pk=stale.pk).update(created_at=five_minutes_ago, updated_at=five_minutes_ago)

    assert placing.placements_reconcile()["failed"] == 1
    assert Placement.objects.get(pk=stale.pk).error_class == "timeout"


def test_preload_requests_versions_marked_for_this_node_onto_the_starting_device(sent: list) -> None:
    gpu = device(80, node=NodeFactory(name="node-a"))
    device(80, node=NodeFactory(name="node-b"))
    here = ServingProfile.objects.create(version=lm(1), preload=True, preload_node="node-a")
    elsewhere = ServingProfile.objects.create(version=lm(1), preload=True, preload_node="node-b")

    placed = placing.preload(device=gpu)

    assert [(p.version, p.device) for p in placed] == [(here.version, gpu)]
    assert not Placement.objects.filter(version=elsewhere.version).exists()


def test_preload_by_demand_loads_the_most_requested_versions_that_are_not_loaded(
    settings: Any, sent: list
) -> None:
    settings.MOC_PRELOAD_BY_DEMAND = True
    device(80)
    wanted, ignored = lm(1), lm(1)
    now = time.time()
    for _ in range(3):
        placing.demand_note(version_id=wanted.pk, now=now)

    placed = placing.preload_by_demand(now=now)

    assert [p.version for p in placed] == [wanted]
    assert not Placement.objects.filter(version=ignored).exists()


def test_preload_by_demand_is_off_by_default(sent: list) -> None:
    device(80)
    placing.demand_note(version_id=lm(1).pk, now=time.time())

    assert placing.preload_by_demand() == []


def test_pin_refuses_a_placement_that_ended() -> None:
    with pytest.raises(ValidationError, match="only active ones pin"):
        placing.placement_pin(placement=PlacementFactory(state=P.FAILED), pinned=True)


def test_a_cpu_node_is_chosen_like_any_device(sent: list) -> None:
    cpu = device(8, node=NodeFactory(backend=Backend.CPU), kind="cpu")

    assert placing.placement_load(version=lm(1)).device == cpu


def test_an_adapter_never_evicts_its_own_base_to_make_room(sent: list) -> None:
    gpu = device(24)
    base = lm(20)
    resident(base, gpu)
    adapter = ModelVersionFactory(
        format=ModelFormat.HF, kind="adapter", parent=base, estimated_vram_bytes=6 * GIB
    )

    with pytest.raises(placing.PlacementRefused):
        placing.placement_load(version=adapter)

    assert Placement.objects.get(version=base).state == P.LOADED


def test_a_version_being_unloaded_is_loaded_again_elsewhere_not_handed_back(sent: list) -> None:
    version = lm(10)
    leaving = resident(version, device(24))
    Placement.objects.filter(pk=leaving.pk).update(state=P.UNLOADING)
    other = device(24)

    placement = placing.placement_load(version=version)

    assert placement.pk != leaving.pk
    assert (placement.state, placement.device) == (P.REQUESTED, other)


def test_loading_a_version_where_it_is_being_unloaded_says_to_wait(sent: list) -> None:
    version = lm(10)
    gpu = device(24)
    leaving = resident(version, gpu)
    Placement.objects.filter(pk=leaving.pk).update(state=P.UNLOADING)

    with pytest.raises(placing.PlacementRefused, match="being unloaded"):
        placing.placement_load(version=version, device=gpu)


def test_memory_used_outside_moc_and_loads_not_yet_reported_are_both_respected(sent: list) -> None:
    gpu = device(24)
    PlacementFactory(device=gpu, state=P.REQUESTED, reserved_bytes=10 * GIB)
    # 5 GiB used by something MOC did not place; the 10 GiB request is not loaded yet.
    reports_free(gpu, 19 * GIB)

    with pytest.raises(placing.PlacementRefused):
        placing.placement_load(version=lm(12), device=gpu)


def test_a_load_on_a_node_without_devices_names_the_node(sent: list) -> None:
    device(24, node=NodeFactory(name="node-a"))

    with pytest.raises(placing.PlacementRefused, match="node-b"):
        placing.placement_load(version=lm(1), node="node-b")


def test_the_reaper_trusts_no_heartbeats_while_its_own_worker_has_none() -> None:
    orphan = PlacementFactory(state=P.LOADED)
    Placement.objects.filter(pk=orphan.pk).update(updated_at=timezone.now() - timedelta(minutes=5))

    assert placing.placements_reconcile()["lost"] == 0  # Redis just restarted: heartbeats are coming back

    assert Placement.objects.get(pk=orphan.pk).state == P.LOADED


def test_a_simulated_gpu_is_refused_a_load_its_hosts_available_memory_cannot_take(sent: list) -> None:
    sim = simulated()
    reports_free(sim, 80 * GIB, host_free_bytes=5 * GIB)

    with pytest.raises(placing.PlacementRefused) as refused:
        placing.placement_load(version=lm(8), device=sim)

    assert str(refused.value).endswith(
        f"cannot be placed: needs 8.0 GiB; {sim.node.name} gpu {sim.index} keeps its weights in host memory,"
        " and its host has 5.0 GiB available."
    )


def test_loads_not_yet_in_the_hosts_report_count_against_it_across_the_nodes_devices(sent: list) -> None:
    node = NodeFactory(backend=Backend.SIM)
    first, second = simulated(node=node), simulated(node=node)
    PlacementFactory(device=first, state=P.LOADING, reserved_bytes=6 * GIB)
    for sim in (first, second):
        reports_free(sim, 80 * GIB, host_free_bytes=10 * GIB)

    with pytest.raises(placing.PlacementRefused, match="its host has 4.0 GiB available"):
        placing.placement_load(version=lm(5), device=second)


def test_a_real_gpu_is_not_bound_by_its_hosts_memory(sent: list) -> None:
    gpu = device(24)
    reports_free(gpu, 24 * GIB, host_free_bytes=GIB)

    assert placing.placement_load(version=lm(8)).device == gpu
