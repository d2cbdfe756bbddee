"""Create MOC's starter alert rules and inhibit rule: the ones most fleets want on day one.

Only what is absent by name is created, so a second run (the run command calls it on every start)
changes nothing, and a rule an admin edited or disabled is left as it is. Every rule is checked
as the admin and the API check it (full_clean: the metric catalogue, matcher labels) before it is
saved. No channels are attached: where notifications go is each site's choice.

A node has two rules and one page per outage: NodeDown (warning) while its heartbeat is late but MOC
still counts it online, NodeLost (critical, the event) once the sweep marks it offline, which also
takes it off the heartbeat gauge. NodeLost mutes NodeDown and the node's device alerts.
GpuBusy (info) is the one a newcomer sees fire on a simulated GPU: a fine-tune drives it to ~95%.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from apps.alerts.domain.events import EventKind
from apps.alerts.domain.rules import RuleKind, Severity
from apps.alerts.models import AlertRule, InhibitRule

_DEVICE = "GPU {{ labels.gpu }} on {{ labels.node }}"

# Threshold rules over the catalogue's metrics (apps/alerts/domain/catalog.py).
THRESHOLD_RULES: list[dict[str, Any]] = [
    {
        "name": "GpuTemperatureHigh",
        "metric": "DCGM_FI_DEV_GPU_TEMP",
        "op": ">",
        "threshold": 85,
        "for_seconds": 120,
        "severity": Severity.WARNING,
        "summary": f"{_DEVICE} is at {{{{ value }}}} °C",
        "description": f"{_DEVICE} has been above 85 °C for 2 minutes. Check its cooling and "
        "what runs on it; it throttles, then fails, if it stays hot.",
    },
    {
        "name": "DeviceMemoryAlmostFull",
        "metric": "moc_device_memory_used_ratio",
        "op": ">",
        "threshold": 0.95,
        "for_seconds": 300,
        "severity": Severity.WARNING,
        "summary": f"{_DEVICE} has {{{{ value }}}} of its memory in use",
        "description": f"{_DEVICE} has had over 95% of its memory in use for 5 minutes: new "
        "placements will not fit and a load may fail. Move or unload a model.",
    },
    {
        # Three heartbeats missed (every MOC_NODE_HEARTBEAT_S, 10 s), for a minute: a run command
        # restarted re-registers its node within seconds, so its pending alert resolves unseen. With
        # the default MOC_NODE_OFFLINE_AFTER_S (60 s) the sweep marks the node offline first: the
        # node leaves the gauge and NodeLost speaks alone. NodeDown speaks where that bound is longer.
        "name": "NodeDown",
        "metric": "moc_node_heartbeat_age_seconds",
        "op": ">",
        "threshold": 30,
        "for_seconds": 60,
        "severity": Severity.WARNING,
        "summary": "Node {{ labels.node }} sent no heartbeat for {{ value }} s",
        "description": "The workers of node {{ labels.node }} have sent no heartbeat for over 90 s, "
        "but MOC does not count the node lost yet (MOC_NODE_OFFLINE_AFTER_S). Check its worker "
        "processes and its network; NodeLost follows if it stays silent.",
    },
    {
        "name": "DeviceUnhealthy",
        "metric": "moc_device_health",
        "op": "==",
        "threshold": 1,
        "for_seconds": 0,
        "severity": Severity.CRITICAL,
        "matchers": [{"label": "health", "op": "!=", "value": "healthy"}],
        "summary": f"{_DEVICE} is {{{{ labels.health }}}}",
        "description": f"{_DEVICE} reports {{{{ labels.health }}}}: it takes no new work until it "
        "is healthy again. See the device's page for the reason.",
    },
    {
        "name": "GpuBusy",
        "metric": "DCGM_FI_DEV_GPU_UTIL",
        "op": ">",
        "threshold": 90,
        "for_seconds": 60,
        "severity": Severity.INFO,
        "summary": f"{_DEVICE} is {{{{ value }}}}% busy",
        "description": f"{_DEVICE} has been over 90% busy for a minute: it is fully used, as it "
        "should be while a job trains on it. Placements served from it may answer slower meanwhile.",
    },
    {
        "name": "DeploymentP99High",
        "metric": "moc_deployment_latency_p99_ms",
        "op": ">",
        "threshold": 1000,
        "for_seconds": 300,
        "severity": Severity.WARNING,
        "summary": "{{ labels.deployment }}: p99 latency {{ value }} ms",
        "description": "Release {{ labels.release }} of {{ labels.deployment }} has answered 1% of its "
        "requests in over a second for 5 minutes.",
    },
    {
        "name": "DeploymentErrorRateHigh",
        "metric": "moc_deployment_error_rate",
        "op": ">",
        "threshold": 0.05,
        "for_seconds": 300,
        "severity": Severity.CRITICAL,
        "summary": "{{ labels.deployment }}: {{ value }} of requests fail",
        "description": "Over 5% of the requests to release {{ labels.release }} of "
        "{{ labels.deployment }} have failed for 5 minutes.",
    },
]

EVENT_RULES: list[dict[str, Any]] = [
    {
        "name": "JobFailed",
        "event": EventKind.JOB_FAILED,
        "severity": Severity.WARNING,
        "summary": "Job {{ labels.job }} ({{ labels.kind }}) failed",
        "description": "Job {{ labels.job }} on queue {{ labels.queue }} failed with "
        "{{ labels.error_class }}. Its page has the log.",
    },
    {
        "name": "VerificationFailed",
        "event": EventKind.VERIFICATION_FAILED,
        "severity": Severity.CRITICAL,
        "summary": "{{ labels.deployment }}: release {{ labels.release }} failed verification",
        "description": "Check {{ labels.check }} failed for release {{ labels.release }} "
        "({{ labels.model }} {{ labels.version }}) of {{ labels.deployment }}.",
    },
    {
        "name": "ReleaseRolledBack",
        "event": EventKind.RELEASE_ROLLED_BACK,
        "severity": Severity.WARNING,
        "summary": "{{ labels.deployment }}: release {{ labels.release }} was rolled back",
        "description": "Release {{ labels.release }} ({{ labels.model }} {{ labels.version }}) of "
        "{{ labels.deployment }} was rolled back; traffic is on the previous release.",
    },
    {
        "name": "NodeLost",
        "event": EventKind.NODE_LOST,
        "severity": Severity.CRITICAL,
        "summary": "Node {{ labels.node }} was lost",
        "description": "Node {{ labels.node }} sent no heartbeat for MOC_NODE_OFFLINE_AFTER_S and was "
        "marked offline: its devices are unavailable and its placements are being moved. It comes "
        "back when its workers start again.",
    },
    {
        "name": "PlacementLost",
        "event": EventKind.PLACEMENT_LOST,
        "severity": Severity.WARNING,
        "summary": "{{ labels.model }} {{ labels.version }} was lost on {{ labels.node }}",
        "description": "Placement {{ labels.placement }} of {{ labels.model }} {{ labels.version }} "
        "on device {{ labels.device }} of {{ labels.node }} was lost.",
    },
    {
        "name": "BreakerOpened",
        "event": EventKind.BREAKER_OPENED,
        "severity": Severity.WARNING,
        "summary": "Breaker opened: {{ labels.model }} {{ labels.version }} on {{ labels.node }}",
        "description": "The circuit breaker of placement {{ labels.placement }} opened after repeated "
        "failures; its requests go elsewhere until it recovers.",
    },
]

# One outage, one page: while NodeLost fires for a node, its NodeDown and its devices' alerts are
# muted (matchers are ANDed, so these are two rules).
INHIBIT_RULES: list[dict[str, Any]] = [
    {
        "name": "node down mutes its devices",
        "source_matchers": [{"label": "alertname", "op": "=~", "value": "NodeDown|NodeLost"}],
        "target_matchers": [{"label": "device", "op": "=~", "value": ".+"}],
        "equal": ["node"],
    },
    {
        "name": "node lost mutes its NodeDown",
        "source_matchers": [{"label": "alertname", "op": "=", "value": "NodeLost"}],
        "target_matchers": [{"label": "alertname", "op": "=", "value": "NodeDown"}],
        "equal": ["node"],
    },
]


def default_rules() -> list[AlertRule]:
    """The starter rules, unsaved."""
    rules = [AlertRule(kind=RuleKind.THRESHOLD, **fields) for fields in THRESHOLD_RULES]
    return rules + [AlertRule(kind=RuleKind.EVENT, **fields) for fields in EVENT_RULES]


def default_inhibit_rules() -> list[InhibitRule]:
    return [InhibitRule(**fields) for fields in INHIBIT_RULES]


class Command(BaseCommand):
    help = "Create the starter alert rules and inhibit rules absent by name (--dry-run: only say which)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be created; create nothing"
        )

    @transaction.atomic
    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        made = 0
        for model, rows in ((AlertRule, default_rules()), (InhibitRule, default_inhibit_rules())):
            present = set(model.objects.values_list("name", flat=True))
            for row in rows:
                if row.name in present:
                    continue
                row.full_clean()
                if not dry_run:
                    row.save()
                made += 1
                verb = "would create" if dry_run else "created"
                self.stdout.write(f"{verb} {model._meta.verbose_name} {row.name}")
        summary = f"{made} starter alert rule{'' if made == 1 else 's'}"
        self.stdout.write(self.style.SUCCESS(f"{summary} {'to create' if dry_run else 'created'}"))
