"""Putting model versions on devices and taking them off: the scheduler's decisions, made real.

The rules live in apps.serving.domain.scheduler and .eviction (pure); this package reads the rows
they need, locks the candidate devices, writes the decision back and sends the work to the
device's own worker queue once the transaction commits.

Why it cannot over-commit a device: the candidate devices' rows are locked (SELECT ... FOR
UPDATE on PostgreSQL; SQLite's IMMEDIATE transactions serialise writers) before their
placements are summed, so two requests for one device are decided one after the other, each
seeing what the other reserved. Jobs reserve room by the same rules under the same locks
(reserve.job_room). Victims of an eviction still count as held until their worker
says they are gone (UNLOADED), and the placement they made room for loads only then.
"""

from apps.serving.placing.devices import device_room, device_views
from apps.serving.placing.housekeeping import placements_expire_idle, placements_reconcile
from apps.serving.placing.load import placement_load, profile_for, profile_timeout_s
from apps.serving.placing.preload import demand_note, preload, preload_by_demand
from apps.serving.placing.recovery import Reload, placement_lost, worker_silence
from apps.serving.placing.reserve import PlacementRefused, job_room, unloads_pending
from apps.serving.placing.unload import placement_pin, placement_unload

__all__ = [
    "PlacementRefused",
    "Reload",
    "demand_note",
    "device_room",
    "device_views",
    "job_room",
    "placement_load",
    "placement_lost",
    "placement_pin",
    "placement_unload",
    "placements_expire_idle",
    "placements_reconcile",
    "preload",
    "preload_by_demand",
    "profile_for",
    "profile_timeout_s",
    "unloads_pending",
    "worker_silence",
]
