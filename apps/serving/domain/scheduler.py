"""Where a model version goes: the placement scheduler.

Pure: the caller reads every device it may use (capacity, what MOC holds there, the latest reported free
memory, the host's too for devices that keep weights in host memory, what is resident) into DeviceView
values under a lock, calls decide(), and applies the Decision atomically: reserve what the request
needs on the chosen device (`Request.need`) and unload the victims. A Refusal carries one sentence an
operator can act on.

What a version needs may differ by device: a figure measured by an earlier load holds only for devices
of the kind it was measured on (apps.fleet.domain.kinds.memory_kind), and the estimate stands in on
the others, so each device is weighed against its own figure.

The choice, in order:
1. Best fit without eviction: the device with the least free memory that still fits, so large free
   blocks stay whole for large models.
2. Otherwise the device where eviction loses least (see _loss).
3. Otherwise refuse, saying how close the fleet came.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from apps.core.domain.units import format_bytes

from .eviction import Policy, Resident, choose_victims, evictable


@dataclass(frozen=True, slots=True)
class DeviceView:
    """One device as the scheduler sees it."""

    id: int
    label: str  # "node-a gpu 1": used in refusal messages
    node: str
    capacity_bytes: int  # what MOC may place there
    # What MOC holds there: active placements + running jobs' reservations + unloads the worker has not
    # confirmed yet.
    placed_bytes: int
    reported_free_bytes: int | None  # free memory from the device's latest telemetry, None if unknown
    accepts: bool = True  # healthy/degraded device on an online node
    why_not: str = ""  # why it does not accept ("unhealthy: uncorrectable ECC", "node offline")
    residents: tuple[Resident, ...] = ()
    clock: float = 0.0  # the device's GDSF clock
    # For a device that keeps weights in host memory (a CPU, a simulated GPU): the host's available
    # memory as its node last reported it, less what loads not yet in that report will take. None
    # for a device with memory of its own, or when the node has not reported.
    host_free_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Request:
    version_id: int | None  # None: not a model load (a job's reservation), so nothing is "already loaded"
    need_bytes: int  # what it needs on a device with no figure of its own in `need_on`
    device_id: int | None = None  # only this device
    node: str | None = None  # only devices of this node
    # Per device id, what it needs there instead: what a load of it measured on a device of that kind.
    need_on: Mapping[int, int] = field(default_factory=dict)

    def need(self, device_id: int) -> int:
        """What the version needs on this device."""
        return self.need_on.get(device_id, self.need_bytes)


@dataclass(frozen=True, slots=True)
class Decision:
    device_id: int
    evict: tuple[Resident, ...]  # victims, in eviction order
    free_after: int  # free bytes left on the device once loaded


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # a sentence for the operator


def _own_room(device: DeviceView) -> int:
    """Bytes the device itself has for MOC, its host aside: the lower of capacity less what MOC holds
    and what it reports free."""
    room = device.capacity_bytes - device.placed_bytes
    if device.reported_free_bytes is not None:
        room = min(room, device.reported_free_bytes)
    return room


def _headroom(device: DeviceView) -> int:
    """Bytes MOC may still place, not floored: negative when a device holds more than it should.

    Eviction adds the victims' bytes to this figure, so the floor must come after that sum.
    """
    room = _own_room(device)
    if device.host_free_bytes is not None:
        room = min(room, device.host_free_bytes)
    return room


def free_bytes(device: DeviceView) -> int:
    """min(reported free, capacity - placed, host free where weights live there), floored at 0.

    Reported memory lags: the device may not yet show what MOC just placed, or may still show memory an
    unload has not returned, so trust whichever figure is smaller (Ollama's rule).
    """
    return max(0, _headroom(device))


def _in_scope(request: Request, device: DeviceView) -> bool:
    """Whether the request may go to `device` at all (its device or node, if it names one)."""
    return (request.device_id is None or device.id == request.device_id) and (
        request.node is None or device.node == request.node
    )


def _holds(device: DeviceView, version_id: int | None) -> bool:
    return version_id is not None and any(r.version_id == version_id for r in device.residents)


def _loss(victims: Sequence[Resident], policy: Policy) -> float:
    """What evicting `victims` costs, to compare devices; lower is better.

    GDSF: the expected reload work, sum of uses * load_seconds (what serving them again would cost,
    weighted by how much they were wanted). LRU: the newest last use among them, so the device giving up
    the longest-idle models wins, as plain LRU across the fleet would have it.
    """
    if policy == Policy.GDSF:
        return sum(v.uses * v.load_seconds for v in victims)
    return max(v.last_used for v in victims)


def _scope_refusal(request: Request, devices: Sequence[DeviceView], scoped: list[DeviceView]) -> Refusal:
    """Why no device can even be considered: none matches, none accepts, or all hold the version."""
    if not scoped:
        if request.device_id is not None:
            named = next((d for d in devices if d.id == request.device_id), None)
            if named is None:
                return Refusal(f"no device has id {request.device_id}")
            return Refusal(f"{named.label} is not on node {request.node}")
        if request.node is not None:
            return Refusal(f"node {request.node} has no devices")
        return Refusal("no devices are registered")
    accepting = [d for d in scoped if d.accepts]
    if not accepting:
        if len(scoped) == 1:
            device = scoped[0]
            return Refusal(
                f"{device.label} does not accept placements: {device.why_not or 'no reason given'}"
            )
        where = f" on node {request.node}" if request.node is not None else ""
        reasons = ", ".join(f"{d.label} ({d.why_not or 'no reason given'})" for d in scoped)
        return Refusal(f"no device{where} accepts placements: {reasons}")
    labels = ", ".join(d.label for d in accepting)
    return Refusal(f"version {request.version_id} is already loaded on {labels}")


def decide(
    request: Request,
    devices: Sequence[DeviceView],
    *,
    now: float,
    policy: Policy = Policy.GDSF,
    min_residency_s: float = 60.0,
) -> Decision | Refusal:
    """The device to load `request` on and what to evict there, or why nowhere can take it.

    Applying a Decision (add the request's need there to placed, remove the victims' bytes) keeps
    placed <= capacity.
    """
    need = request.need
    scoped = [d for d in devices if _in_scope(request, d)]
    candidates = [d for d in scoped if d.accepts and not _holds(d, request.version_id)]
    if not candidates:
        return _scope_refusal(request, devices, scoped)

    fits = [d for d in candidates if _headroom(d) >= need(d.id)]
    if fits:
        best = min(fits, key=lambda d: (_headroom(d) - need(d.id), d.id))
        return Decision(device_id=best.id, evict=(), free_after=_headroom(best) - need(best.id))

    best_loss: tuple[float, int, int] | None = None
    chosen: Decision | None = None
    for device in candidates:
        room = _headroom(device)
        victims = choose_victims(
            device.residents, need(device.id) - room, now=now, policy=policy, min_residency_s=min_residency_s
        )
        if victims is None:
            continue
        freed = sum(v.size_bytes for v in victims)
        loss = (_loss(victims, policy), freed, device.id)
        if best_loss is None or loss < best_loss:
            best_loss = loss
            chosen = Decision(
                device_id=device.id, evict=tuple(victims), free_after=room + freed - need(device.id)
            )
    if chosen is not None:
        return chosen
    return _capacity_refusal(request, candidates, now=now, min_residency_s=min_residency_s)


def short_of_room(request: Request, devices: Sequence[DeviceView]) -> dict[int, int]:
    """Per device in the request's scope that accepts it, does not hold it yet and is big enough for
    what it needs there, that need: the devices where only what others hold (and eviction could not
    free) keeps it out, were it refused. Empty when no memory let go anywhere could help."""
    return {
        d.id: request.need(d.id)
        for d in devices
        if _in_scope(request, d)
        and d.accepts
        and not _holds(d, request.version_id)
        and request.need(d.id) <= d.capacity_bytes
    }


def _capacity_refusal(
    request: Request, candidates: Sequence[DeviceView], *, now: float, min_residency_s: float
) -> Refusal:
    """The closest the candidates came: the largest device if none is big enough for what it needs
    there, else the most room, each with the figure that holds on that device."""
    largest = min(candidates, key=lambda d: (-d.capacity_bytes, d.id))
    if all(request.need(d.id) > d.capacity_bytes for d in candidates):
        return Refusal(
            f"needs {format_bytes(request.need(largest.id))}; the largest device, {largest.label}, "
            f"offers {format_bytes(largest.capacity_bytes)}"
        )

    def most_room(device: DeviceView) -> int:
        evictable_bytes = sum(
            r.size_bytes for r in device.residents if evictable(r, now=now, min_residency_s=min_residency_s)
        )
        return max(0, _headroom(device) + evictable_bytes)

    # The closest: the least short of what it needs there.
    device = min(candidates, key=lambda d: (request.need(d.id) - most_room(d), d.id))
    room, need = most_room(device), request.need(device.id)
    host = _binding_host_free(device)
    if host is not None:
        evicted = f" ({format_bytes(room)} with what eviction could free)" if room > host else ""
        return Refusal(
            f"needs {format_bytes(need)}; {device.label} keeps its weights in host memory, and its host "
            f"has {format_bytes(max(0, host))} available{evicted}"
        )
    return Refusal(
        f"needs {format_bytes(need)}; the most that eviction can free is {format_bytes(room)}, "
        f"on {device.label}"
    )


def _binding_host_free(device: DeviceView) -> int | None:
    """The host's available memory when it, not the device's own room, limits what fits there."""
    host = device.host_free_bytes
    return host if host is not None and host < _own_room(device) else None
