"""The Celery app, its queues and its periodic tasks (all of them, here, in one place)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import import_modules
from django.conf import settings

from apps.serving.messages import LEGACY_NAMES

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
    # Seconds: a waiting job starts within MOC_JOB_DISPATCH_S of room freeing up (kicks come sooner).
    "jobs-dispatch": {
        "task": "apps.jobs.tasks.jobs_dispatch",
        "schedule": settings.MOC_JOB_DISPATCH_S,
        "options": {"expires": settings.MOC_JOB_DISPATCH_S},
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
    "datasets-scan": {
        "task": "apps.jobs.tasks.datasets_scan",
        "schedule": crontab(minute="*/15"),
        "options": {"expires": 600},
    },
    # Seconds: a keep-alive of a few minutes should not overrun by a whole extra minute.
    "serving-placements-expire-idle": {
        "task": "apps.serving.tasks.placements_expire_idle",
        "schedule": 30.0,
        "options": {"expires": 29},
    },
    "serving-placements-reconcile": {
        "task": "apps.serving.tasks.placements_reconcile",
        "schedule": 30.0,
        "options": {"expires": 29},
    },
    # Does nothing unless MOC_PRELOAD_BY_DEMAND is on.
    "serving-placements-preload-by-demand": {
        "task": "apps.serving.tasks.placements_preload_by_demand",
        "schedule": crontab(minute="*"),
        "options": {"expires": 50},
    },
    "serving-inference-records-prune": {
        "task": "apps.serving.tasks.inference_records_prune",
        "schedule": crontab(minute=23, hour="*"),
        "options": {"expires": 3000},
    },
    # Seconds: a canary step's pause, a failed analysis or a blue-green window is acted on within 2 s.
    "deployments-releases-advance": {
        "task": "apps.deployments.tasks.releases_advance",
        "schedule": 2.0,
        "options": {"expires": 2},
    },
    # Each run rolls up the last few complete minutes again, so a late or missed run is caught up.
    "deployments-serving-minutes-roll-up": {
        "task": "apps.deployments.tasks.serving_minutes_roll_up",
        "schedule": crontab(minute="*"),
        "options": {"expires": 50},
    },
    # Seconds: a dead worker's deliveries should not look running for longer than its silence.
    "core-reconcile-task-deliveries": {
        "task": "apps.core.tasks.task_deliveries_reconcile",
        "schedule": 15.0,
        "options": {"expires": 14},
    },
    # Seconds: a rule's `for` is honoured to within one evaluation; notifications go out on the same tick.
    "alerts-evaluate": {
        "task": "apps.alerts.tasks.alerts_evaluate",
        "schedule": settings.MOC_ALERT_EVAL_S,
        "options": {"expires": settings.MOC_ALERT_EVAL_S},
    },
    # Deliveries whose retry is due (a retry's own countdown may have died with its worker).
    "alerts-deliveries-retry": {
        "task": "apps.alerts.tasks.deliveries_retry_due",
        "schedule": 30.0,
        "options": {"expires": 29},
    },
    "alerts-prune": {
        "task": "apps.alerts.tasks.alerts_prune",
        "schedule": crontab(minute=41, hour="*"),
        "options": {"expires": 3000},
    },
    "core-prune-task-deliveries": {
        "task": "apps.core.tasks.task_deliveries_prune",
        "schedule": crontab(minute=17, hour="*"),
        "options": {"expires": 3000},
    },
}


def _legacy_names(sender: Celery, **kwargs: Any) -> None:
    """Messages queued under a task's old name (before an app move) run as that task: a worker
    looks a message's task up by name in this registry, so each old name points at the task.

    Twice, both idempotent: when the app is finalized, and when a worker has imported the task
    modules (autodiscovery answers the same signal first), which may come after finalizing."""
    for old, new in LEGACY_NAMES.items():
        if new in sender.tasks:
            sender.tasks[old] = sender.tasks[new]


app.on_after_finalize.connect(_legacy_names)
import_modules.connect(_legacy_names, sender=app, weak=False)
