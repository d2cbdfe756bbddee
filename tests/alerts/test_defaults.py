"""manage.py alerts_defaults: the starter rules, created once, each one the catalogue accepts."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from apps.alerts.domain.catalog import rule_errors
from apps.alerts.domain.inhibition import InhibitSpec, inhibited
from apps.alerts.domain.matchers import matches_all, to_matchers
from apps.alerts.domain.templates import annotation_errors, render_annotations
from apps.alerts.management.commands.alerts_defaults import default_inhibit_rules, default_rules
from apps.alerts.models import AlertRule, InhibitRule

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("alerts_defaults", *args, stdout=out)
    return out.getvalue()


def test_it_creates_the_threshold_and_event_rules_and_the_node_inhibit_rule() -> None:
    run()

    names = set(AlertRule.objects.values_list("name", flat=True))
    assert {"GpuTemperatureHigh", "DeviceMemoryAlmostFull", "NodeDown", "DeviceUnhealthy", "GpuBusy"} <= names
    assert {"DeploymentP99High", "DeploymentErrorRateHigh", "JobFailed", "VerificationFailed"} <= names
    assert {"ReleaseRolledBack", "NodeLost", "PlacementLost", "BreakerOpened"} <= names
    hot = AlertRule.objects.get(name="GpuTemperatureHigh")
    assert (hot.condition, hot.for_seconds) == ("DCGM_FI_DEV_GPU_TEMP > 85", 120)
    assert set(InhibitRule.objects.values_list("name", flat=True)) == {
        "node down mutes its devices",
        "node lost mutes its NodeDown",
    }
    assert all(rule.equal == ["node"] for rule in InhibitRule.objects.all())


def test_a_second_run_creates_nothing_and_keeps_what_an_admin_changed() -> None:
    run()
    AlertRule.objects.filter(name="NodeDown").update(threshold=120, enabled=False)
    AlertRule.objects.filter(name="JobFailed").delete()
    count = AlertRule.objects.count()

    out = run()

    assert AlertRule.objects.count() == count + 1  # only the deleted one comes back
    node_down = AlertRule.objects.get(name="NodeDown")
    assert (node_down.threshold, node_down.enabled) == (120, False)
    assert "created alert rule JobFailed" in out
    assert InhibitRule.objects.count() == 2


def test_a_dry_run_says_what_it_would_create_and_creates_nothing() -> None:
    out = run("--dry-run")

    assert "would create alert rule GpuTemperatureHigh" in out
    assert not AlertRule.objects.exists()
    assert not InhibitRule.objects.exists()


@pytest.mark.parametrize("rule", default_rules(), ids=lambda r: r.name)
def test_every_default_rule_passes_the_catalogue(rule: AlertRule) -> None:
    assert (
        rule_errors(
            kind=rule.kind,
            metric=rule.metric,
            event=rule.event,
            threshold=rule.threshold,
            matchers=rule.matchers,
        )
        == {}
    )


@pytest.mark.parametrize("rule", default_rules(), ids=lambda r: r.name)
def test_every_default_rules_summary_and_description_pass_the_annotation_check(rule: AlertRule) -> None:
    """The check the rule editor and the API make on save, over a sample annotation context."""
    assert annotation_errors(rule.summary) == []
    assert annotation_errors(rule.description) == []


@pytest.mark.parametrize("rule", default_rules(), ids=lambda r: r.name)
def test_every_default_rules_annotations_render_without_error(rule: AlertRule) -> None:
    labels = {"node": "gpu-01", "gpu": "0", "device": "gpu0", "deployment": "chat", "job": "7"}

    annotations = render_annotations(rule.summary, rule.description, labels, 91.5)

    assert set(annotations) == {"summary", "description"}
    assert not any("template error" in text for text in annotations.values())


def test_device_unhealthy_watches_only_series_not_healthy() -> None:
    rule = next(r for r in default_rules() if r.name == "DeviceUnhealthy")
    matchers = to_matchers(rule.matchers)

    assert matches_all(matchers, {"device": "gpu0", "health": "unhealthy"})
    assert not matches_all(matchers, {"device": "gpu0", "health": "healthy"})


def _specs() -> list[InhibitSpec]:
    return [
        InhibitSpec(
            source=to_matchers(rule.source_matchers),
            target=to_matchers(rule.target_matchers),
            equal=tuple(rule.equal),
        )
        for rule in default_inhibit_rules()
    ]


@pytest.mark.parametrize("source", ["NodeDown", "NodeLost"])
def test_a_node_down_or_lost_mutes_its_own_devices_only(source: str) -> None:
    firing = [{"alertname": source, "node": "gpu-01"}]

    assert inhibited(
        {"alertname": "GpuTemperatureHigh", "node": "gpu-01", "device": "gpu0"}, firing, _specs()
    )
    assert not inhibited(
        {"alertname": "GpuTemperatureHigh", "node": "gpu-02", "device": "gpu0"}, firing, _specs()
    )
    assert not inhibited({"alertname": "DeploymentP99High", "node": "gpu-01"}, firing, _specs())


def test_one_outage_one_page_node_lost_mutes_that_nodes_node_down() -> None:
    down = {"alertname": "NodeDown", "node": "gpu-01", "severity": "warning"}

    assert inhibited(down, [{"alertname": "NodeLost", "node": "gpu-01", "event": "node_lost"}], _specs())
    assert not inhibited(down, [{"alertname": "NodeLost", "node": "gpu-02", "event": "node_lost"}], _specs())
    # NodeDown never mutes NodeLost: the lost node is the page.
    lost = {"alertname": "NodeLost", "node": "gpu-01", "event": "node_lost"}
    assert not inhibited(lost, [down], _specs())


def test_node_down_is_a_warning_that_waits_out_a_restart_and_node_lost_is_the_page() -> None:
    rules = {rule.name: rule for rule in default_rules()}
    down, lost = rules["NodeDown"], rules["NodeLost"]

    assert (down.severity, lost.severity) == ("warning", "critical")
    # Workers re-register within seconds of a restart: a minute's 'for' lets that pass unseen.
    assert down.for_seconds >= 60
