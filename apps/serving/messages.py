"""The tasks serving sends to a device's worker, by name: the contract between the senders (the
scheduler, the web side of inference) and the worker that runs them (apps.serving.tasks).

Senders use these names with apps.core.dispatch instead of importing the tasks, so the web side
never imports the worker's modules and placing never imports the tasks that call it.
"""

from __future__ import annotations

PLACEMENT_LOAD = "serving.placement_load"
PLACEMENT_UNLOAD = "serving.placement_unload"
PLACEMENT_INFER = "serving.placement_infer"
DEVICE_PING = "serving.device_ping"

# The names these tasks had while serving lived in the fleet app. Messages already queued under
# them when MOC is upgraded still run: moc_site/celery.py registers each old name for its task.
# Kept for one release; migration serving.0002 moves the periodic tasks' rows.
LEGACY_NAMES = {
    "apps.fleet.tasks.placement_load": PLACEMENT_LOAD,
    "apps.fleet.tasks.placement_unload": PLACEMENT_UNLOAD,
    "apps.fleet.tasks.placement_infer": PLACEMENT_INFER,
    "apps.fleet.tasks.device_ping": DEVICE_PING,
    "apps.fleet.tasks.placements_expire_idle": "apps.serving.tasks.placements_expire_idle",
    "apps.fleet.tasks.placements_reconcile": "apps.serving.tasks.placements_reconcile",
    "apps.fleet.tasks.placements_preload_by_demand": "apps.serving.tasks.placements_preload_by_demand",
    "apps.fleet.tasks.inference_records_prune": "apps.serving.tasks.inference_records_prune",
}
