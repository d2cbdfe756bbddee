"""The Celery app, its queues and its periodic tasks (all of them, here, in one place)."""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "moc_site.settings")

app = Celery("moc_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every entry has `expires`, so a beat that was down does not fire a backlog on return.
app.conf.beat_schedule = {
    "jobs-redispatch-stale": {
        "task": "apps.jobs.tasks.jobs_redispatch_stale",
        "schedule": crontab(minute="*"),
        "options": {"expires": 50},
    },
    # Seconds, not a crontab: offline detection must not wait a whole extra minute.
    "fleet-nodes-sweep": {
        "task": "apps.fleet.tasks.fleet_nodes_sweep",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
    "fleet-telemetry-compact": {
        "task": "apps.fleet.tasks.fleet_telemetry_compact",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 500},
    },
    "registry-scan": {
        "task": "apps.models.tasks.registry_scan_periodic",
        "schedule": crontab(minute="*/15"),
        "options": {"expires": 600},
    },
    # Seconds: a keep-alive of a few minutes should not overrun by a whole extra minute.
    "fleet-placements-expire-idle": {
        "task": "apps.fleet.tasks.placements_expire_idle",
        "schedule": 30.0,
        "options": {"expires": 29},
    },
    "fleet-placements-reconcile": {
        "task": "apps.fleet.tasks.placements_reconcile",
        "schedule": 30.0,
        "options": {"expires": 29},
    },
    # Does nothing unless MOC_PRELOAD_BY_DEMAND is on.
    "fleet-placements-preload-by-demand": {
        "task": "apps.fleet.tasks.placements_preload_by_demand",
        "schedule": crontab(minute="*"),
        "options": {"expires": 50},
    },
    "fleet-inference-records-prune": {
        "task": "apps.fleet.tasks.inference_records_prune",
        "schedule": crontab(minute=23, hour="*"),
        "options": {"expires": 3000},
    },
    "core-prune-task-deliveries": {
        "task": "apps.core.tasks.task_deliveries_prune",
        "schedule": crontab(minute=17, hour="*"),
        "options": {"expires": 3000},
    },
}
