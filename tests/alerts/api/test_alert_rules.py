"""/api/v1/alert-rules/: configuring threshold and event rules, checked against the metric
catalogue, and previewing what a rule would have fired."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.alerts.models import AlertRule
from apps.core.domain.roles import Role
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory
from tests.fleet.factories import DeviceFactory, TelemetrySampleFactory

pytestmark = pytest.mark.django_db

RULES = "/api/v1/alert-rules/"
PREVIEW = f"{RULES}preview/"
Client = Callable[[Role | None], APIClient]
HOT = {"name": "GpuHot", "metric": "DCGM_FI_DEV_GPU_TEMP", "op": ">", "threshold": 85}


@pytest.fixture
def admin_api(client_as: Client) -> APIClient:
    return client_as(Role.ADMIN)


def test_an_admin_creates_a_threshold_rule_with_its_channels_and_annotations(admin_api: APIClient) -> None:
    channel = NotificationChannelFactory()

    response = admin_api.post(
        RULES,
        {
            **HOT,
            "op": ">=",
            "for_seconds": 120,
            "keep_firing_seconds": 60,
            "severity": "critical",
            "matchers": [{"label": "node", "op": "=~", "value": "gpu-.*"}],
            "summary": "GPU {{ labels.gpu }} on {{ labels.node }} is at {{ value }} °C",
            "channels": [channel.pk],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    rule = AlertRule.objects.get()
    assert (rule.condition, rule.for_seconds, rule.keep_firing_seconds, rule.severity) == (
        "DCGM_FI_DEV_GPU_TEMP >= 85",
        120,
        60,
        "critical",
    )
    assert list(rule.channels.all()) == [channel]
    assert response.json()["matchers_text"] == 'node=~"gpu-.*"'


def test_matchers_may_be_written_in_alertmanagers_text_form(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {**HOT, "matchers": 'node=~"gpu-0[12]", device="gpu0"'}, format="json")

    assert response.status_code == 201
    assert response.json()["matchers"] == [
        {"label": "node", "op": "=~", "value": "gpu-0[12]"},
        {"label": "device", "op": "=", "value": "gpu0"},
    ]


def test_an_admin_creates_an_event_rule(admin_api: APIClient) -> None:
    response = admin_api.post(
        RULES,
        {"name": "JobFailed", "kind": "event", "event": "job_failed", "matchers": 'queue="default"'},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert AlertRule.objects.get().condition == "event job_failed"


def test_an_unknown_metric_names_the_metric_field_and_suggests_the_real_one(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {**HOT, "metric": "gpu_temp"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert list(body["fields"]) == ["metric"]
    assert "unknown metric 'gpu_temp'" in body["fields"]["metric"][0]
    assert "DCGM_FI_DEV_GPU_TEMP" in body["fields"]["metric"][0]


def test_a_matcher_on_a_label_the_metric_lacks_names_the_matchers_field(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {**HOT, "matchers": 'deployment="chat"'}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert list(body["fields"]) == ["matchers"]
    assert body["fields"]["matchers"][0].startswith(
        "label 'deployment' is not a label of DCGM_FI_DEV_GPU_TEMP"
    )


def test_a_threshold_rule_without_a_threshold_names_the_threshold_field(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {"name": "x", "metric": "DCGM_FI_DEV_GPU_TEMP"}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"threshold": ["is required for threshold rules"]}


def test_an_event_rule_without_an_event_names_the_event_field(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {"name": "x", "kind": "event"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["event"]


def test_a_summary_reaching_for_python_internals_names_the_summary_field(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {**HOT, "summary": "{{ ''.__class__.__mro__ }}"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["summary"]


def test_unreadable_text_matchers_name_the_matchers_field(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {**HOT, "matchers": "node gpu-01"}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"]["matchers"][0].startswith("cannot read a matcher")


def test_a_partial_change_is_checked_with_the_saved_fields(admin_api: APIClient) -> None:
    rule = AlertRuleFactory(
        metric="DCGM_FI_DEV_GPU_TEMP", matchers=[{"label": "gpu", "op": "=", "value": "0"}]
    )

    ok = admin_api.patch(f"{RULES}{rule.pk}/", {"threshold": 90}, format="json")
    # The saved matcher names `gpu`, which the deployment metric does not have.
    bad = admin_api.patch(f"{RULES}{rule.pk}/", {"metric": "moc_deployment_error_rate"}, format="json")

    assert ok.status_code == 200
    assert bad.status_code == 400
    assert list(bad.json()["fields"]) == ["matchers"]


def test_a_rule_shows_its_open_alert_count(client_as: Client) -> None:
    rule = AlertRuleFactory()
    AlertFactory(rule=rule)

    body = client_as(Role.VIEWER).get(f"{RULES}{rule.pk}/").json()

    assert body["open_alerts"] == 1


def test_a_duplicate_rule_name_names_the_name_field(admin_api: APIClient) -> None:
    AlertRuleFactory(name="GpuHot")

    response = admin_api.post(RULES, HOT, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["name"]


def test_an_unknown_operator_names_the_op_field(admin_api: APIClient) -> None:
    response = admin_api.post(RULES, {**HOT, "op": "=>"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["op"]


def test_a_bad_regex_in_the_matchers_names_the_matchers_field(admin_api: APIClient) -> None:
    response = admin_api.post(
        RULES, {**HOT, "matchers": [{"label": "node", "op": "=~", "value": "("}]}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert list(body["fields"]) == ["matchers"]
    assert body["detail"].startswith("matchers: matcher 1: value: '(' is not a valid regular expression")


def test_rules_filter_by_severity_and_kind(client_as: Client) -> None:
    AlertRuleFactory(severity="info")
    critical = AlertRuleFactory(severity="critical")
    event = AlertRuleFactory(kind="event", event="job_failed", metric="", threshold=None)

    viewer = client_as(Role.VIEWER)

    assert [r["id"] for r in viewer.get(RULES, {"severity": "critical"}).json()["results"]] == [critical.pk]
    assert [r["id"] for r in viewer.get(RULES, {"kind": "event"}).json()["results"]] == [event.pk]


def _hot_hour(device: object) -> None:
    """Device 0 at 90 °C for the 30 minutes from 3 hours ago, 60 °C around them, one reading a minute."""
    start = timezone.now() - dt.timedelta(hours=4)
    for minute in range(120):
        hot = 60 <= minute < 90
        TelemetrySampleFactory(
            device=device, at=start + dt.timedelta(minutes=minute), temperature_c=90.0 if hot else 60.0
        )


def test_a_preview_replays_the_last_day_of_stored_samples(client_as: Client) -> None:
    _hot_hour(DeviceFactory(simulated=True))

    response = client_as(Role.VIEWER).post(PREVIEW, {**HOT, "for_seconds": 120}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["metric"], body["history"]) == ("DCGM_FI_DEV_GPU_TEMP", True)
    (fired,) = body["alerts"]
    assert fired["peak_value"] == 90.0
    assert None not in (fired["fired_at"], fired["resolved_at"])
    assert len(body["series"]) == 1


def test_a_preview_of_a_metric_without_history_says_so(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(
        PREVIEW, {"metric": "moc_node_heartbeat_age_seconds", "threshold": 60}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["history"], body["alerts"]) == (False, [])
    assert "no history" in body["reason"]


def test_a_preview_of_an_unknown_metric_names_the_metric_field(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(PREVIEW, {"metric": "gpu_temp", "threshold": 1}, format="json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["metric"]


def test_a_saved_rule_previews_itself(client_as: Client) -> None:
    _hot_hour(DeviceFactory(simulated=True))
    rule = AlertRuleFactory(metric="DCGM_FI_DEV_GPU_TEMP", op=">", threshold=95, for_seconds=0)

    body = client_as(Role.VIEWER).get(f"{RULES}{rule.pk}/preview/").json()

    assert (body["history"], body["alerts"]) == (True, [])


def test_an_event_rule_has_no_preview(client_as: Client) -> None:
    rule = AlertRuleFactory(kind="event", event="job_failed", metric="", threshold=None)

    response = client_as(Role.VIEWER).get(f"{RULES}{rule.pk}/preview/")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["kind"]
