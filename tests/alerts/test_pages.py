"""The alerting pages: alerts firing first, rules, silences (with the operators' form) and channels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.alerts import services
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, AlertRule, Delivery, Silence
from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory, SilenceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def page_as(make_user: Callable[..., Any]) -> Callable[[Role], Client]:
    def make(role: Role) -> Client:
        client = Client()
        client.force_login(make_user(role))
        return client

    return make


PAGES = ["alerts:list", "alerts:rules", "alerts:silences", "alerts:channels", "alerts:history"]


@pytest.mark.parametrize("name", PAGES)
def test_every_alerting_page_requires_login(name: str) -> None:
    response = Client().get(reverse(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", PAGES)
def test_every_alerting_page_says_what_to_do_when_empty(page_as: Callable[[Role], Client], name: str) -> None:
    response = page_as(Role.VIEWER).get(reverse(name))

    assert response.status_code == 200
    assert 'class="empty"' in response.content.decode()


def _resolved(hours_ago: float, **fields: Any) -> Alert:
    at = timezone.now() - dt.timedelta(hours=hours_ago)
    return AlertFactory(state=AlertState.RESOLVED, resolved_at=at, **fields)


def test_the_alerts_page_lists_firing_then_pending_then_resolved_in_the_last_day(
    page_as: Callable[[Role], Client],
) -> None:
    resolved = _resolved(2, series={"n": "1"})
    _resolved(30, series={"n": "0"})
    pending = AlertFactory(series={"n": "3"}, state=AlertState.PENDING, fired_at=None)
    firing = AlertFactory(series={"n": "2"})

    response = page_as(Role.VIEWER).get(reverse("alerts:list"))

    assert list(response.context["object_list"]) == [firing, pending, resolved]
    assert "?state=resolved" in response.content.decode()


def test_the_resolved_filter_shows_every_resolved_alert(page_as: Callable[[Role], Client]) -> None:
    old, recent = _resolved(30, series={"n": "0"}), _resolved(2, series={"n": "1"})

    response = page_as(Role.VIEWER).get(reverse("alerts:list"), {"state": "resolved"})

    assert set(response.context["object_list"]) == {old, recent}


def test_the_alerts_page_shows_a_severity_badge(page_as: Callable[[Role], Client]) -> None:
    AlertFactory(rule=AlertRuleFactory(severity="critical"))

    response = page_as(Role.VIEWER).get(reverse("alerts:list"))

    assert '<span class="badge bad">critical</span>' in response.content.decode()


def test_the_alerts_page_marks_silenced_alerts(page_as: Callable[[Role], Client]) -> None:
    AlertFactory(series={"node": "gpu-01"})
    services.silence_create(
        created_by=None,
        matchers=[{"label": "node", "op": "=", "value": "gpu-01"}],
        ends_at=timezone.now() + dt.timedelta(hours=1),
        comment="fans",
    )

    response = page_as(Role.VIEWER).get(reverse("alerts:list"))

    assert ">silenced</span>" in response.content.decode()


def test_the_alert_page_offers_an_operator_to_acknowledge(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    response = page_as(Role.OPERATOR).get(alert.get_absolute_url())

    assert response.context["can_acknowledge"]


def test_the_alert_page_offers_a_viewer_nothing_to_do(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    response = page_as(Role.VIEWER).get(alert.get_absolute_url())

    assert not response.context["can_acknowledge"]


def test_an_operator_acknowledges_from_the_alert_page(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    response = page_as(Role.OPERATOR).post(
        reverse("alerts:acknowledge", args=[alert.pk]), {"comment": "swapping the fan", "expires": "4"}
    )

    alert.refresh_from_db()
    assert response.status_code == 302
    assert alert.ack_comment == "swapping the fan"
    assert dt.timedelta(hours=3, minutes=59) < alert.ack_expires_at - timezone.now() <= dt.timedelta(hours=4)
    event = AuditEvent.objects.get(action="acknowledge")
    assert event.changes["ack_comment"] == ["", "swapping the fan"]


def test_an_acknowledgement_until_it_resolves_has_no_expiry(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    page_as(Role.OPERATOR).post(
        reverse("alerts:acknowledge", args=[alert.pk]), {"comment": "", "expires": ""}
    )

    alert.refresh_from_db()
    assert alert.acknowledged
    assert alert.ack_expires_at is None


def test_acknowledging_from_the_list_goes_back_to_the_list(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()
    back = reverse("alerts:list") + "?severity=warning"

    response = page_as(Role.OPERATOR).post(
        reverse("alerts:acknowledge", args=[alert.pk]), {"expires": "1", "next": back}
    )

    assert response["Location"] == back


def test_acknowledging_never_sends_you_off_site(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    response = page_as(Role.OPERATOR).post(
        reverse("alerts:acknowledge", args=[alert.pk]), {"expires": "1", "next": "https://evil.example/"}
    )

    assert response["Location"] == alert.get_absolute_url()


def test_acknowledging_a_resolved_alert_says_why(page_as: Callable[[Role], Client]) -> None:
    alert = _resolved(1)

    response = page_as(Role.OPERATOR).post(reverse("alerts:acknowledge", args=[alert.pk]), follow=True)

    assert "only pending or firing alerts can be acknowledged" in response.content.decode()


def test_an_operator_unacknowledges_from_the_alert_page(page_as: Callable[[Role], Client]) -> None:
    client = page_as(Role.OPERATOR)
    alert = AlertFactory()
    client.post(reverse("alerts:acknowledge", args=[alert.pk]), {"comment": "mine"})
    assert client.get(alert.get_absolute_url()).context["can_unacknowledge"]

    client.post(reverse("alerts:unacknowledge", args=[alert.pk]))

    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert AuditEvent.objects.filter(action="unacknowledge").exists()


def test_the_alert_page_shows_its_values_timeline_silences_and_notifications(
    page_as: Callable[[Role], Client],
) -> None:
    alert = AlertFactory(
        series={"node": "gpu-01"},
        fired_value=88.5,
        peak_value=97.25,
        annotations={"summary": "gpu-01 is hot"},
    )
    SilenceFactory(matchers=[{"label": "node", "op": "=", "value": "gpu-01"}], comment="fan swap")
    SilenceFactory(matchers=[{"label": "node", "op": "=", "value": "gpu-02"}], comment="other node")
    channel = NotificationChannelFactory(name="ops")
    Delivery.objects.create(channel=channel, status="delivered", fingerprints=[alert.fingerprint], body="{}")
    Delivery.objects.create(channel=channel, status="failed", fingerprints=["0" * 16], body="{}")

    response = page_as(Role.VIEWER).get(alert.get_absolute_url())

    content = response.content.decode()
    assert "gpu-01 is hot" in content
    assert "88.5" in content
    assert "97.25" in content
    assert [s.comment for s in response.context["silences"]] == ["fan swap"]
    assert [d.status for d in response.context["deliveries"]] == ["delivered"]


def test_a_viewer_cannot_acknowledge_from_the_page(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    assert page_as(Role.VIEWER).post(reverse("alerts:acknowledge", args=[alert.pk])).status_code == 403


def test_the_rule_page_lists_its_recent_alerts(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    response = page_as(Role.VIEWER).get(alert.rule.get_absolute_url())

    assert list(response.context["recent_alerts"]) == [alert]


def test_silence_from_an_alert_is_prefilled_with_its_labels_and_ends_when_it_resolves(
    page_as: Callable[[Role], Client],
) -> None:
    alert = AlertFactory(series={"node": "gpu-01"})
    client = page_as(Role.OPERATOR)

    form = client.get(reverse("alerts:silences"), {"alert": alert.pk}).context["form"]
    assert form.initial["expire_on_resolve"] is True
    response = client.post(
        reverse("alerts:silences"),
        {
            "matchers": form.initial["matchers"],
            "duration": "4",
            "comment": "fan swap",
            "expire_on_resolve": "on",
            "alert": alert.pk,
        },
    )

    silence = Silence.objects.get()
    assert response.status_code == 302
    assert (silence.alert, silence.expire_on_resolve) == (alert, True)
    assert {"label": "node", "op": "=", "value": "gpu-01"} in silence.matchers
    assert not any(m["label"] == "severity" for m in silence.matchers)


def test_expire_on_resolve_without_an_alert_is_refused_on_the_field(
    page_as: Callable[[Role], Client],
) -> None:
    response = page_as(Role.OPERATOR).post(
        reverse("alerts:silences"),
        {"matchers": 'node="x"', "duration": "2", "comment": "c", "expire_on_resolve": "on"},
    )

    assert response.status_code == 400
    assert response.context["form"].errors["expire_on_resolve"]
    assert not Silence.objects.exists()


def test_a_silence_can_end_at_a_time(page_as: Callable[[Role], Client]) -> None:
    ends = (timezone.localtime() + dt.timedelta(days=2)).replace(second=0, microsecond=0)

    page_as(Role.OPERATOR).post(
        reverse("alerts:silences"),
        {"matchers": 'node="x"', "ends_at": ends.strftime("%Y-%m-%dT%H:%M"), "comment": "c"},
    )

    assert Silence.objects.get().ends_at == ends


def test_an_operator_silences_from_the_silences_page(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.OPERATOR).post(
        reverse("alerts:silences"), {"matchers": 'node=~"gpu-0[12]"', "duration": "2", "comment": "fans"}
    )

    silence = Silence.objects.get()
    assert response.status_code == 302
    assert silence.matchers == [{"label": "node", "op": "=~", "value": "gpu-0[12]"}]
    assert dt.timedelta(hours=1, minutes=59) < silence.ends_at - timezone.now() <= dt.timedelta(hours=2)


def test_a_bad_regex_in_the_silence_form_is_shown_on_the_field(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.OPERATOR).post(
        reverse("alerts:silences"), {"matchers": 'node=~"gpu-("', "duration": "2", "comment": "fans"}
    )

    assert response.status_code == 400
    assert "not a valid regular expression" in response.context["form"].errors["matchers"][0]
    assert not Silence.objects.exists()


def test_unreadable_matcher_text_is_shown_on_the_field(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.OPERATOR).post(
        reverse("alerts:silences"), {"matchers": "node", "duration": "2", "comment": "fans"}
    )

    assert response.context["form"].errors["matchers"][0].startswith("cannot read a matcher")


def test_a_viewer_cannot_silence_from_the_page(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.VIEWER).post(
        reverse("alerts:silences"), {"matchers": 'node="x"', "duration": "2", "comment": "fans"}
    )

    assert response.status_code == 403


def test_the_silence_form_is_prefilled_from_the_alert_page_link(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.OPERATOR).get(reverse("alerts:silences"), {"matchers": 'node="gpu-01"'})

    assert response.context["form"].initial["matchers"] == 'node="gpu-01"'


def test_an_operator_expires_a_silence_from_the_page(page_as: Callable[[Role], Client]) -> None:
    silence = SilenceFactory()

    page_as(Role.OPERATOR).post(reverse("alerts:silence_expire", args=[silence.pk]))

    assert Silence.objects.get(pk=silence.pk).status == "expired"


def test_expiring_an_expired_silence_from_the_page_says_why_instead_of_failing(
    page_as: Callable[[Role], Client],
) -> None:
    silence = SilenceFactory()
    client = page_as(Role.OPERATOR)
    client.post(reverse("alerts:silence_expire", args=[silence.pk]))

    response = client.post(reverse("alerts:silence_expire", args=[silence.pk]), follow=True)

    assert response.status_code == 200
    assert "already expired" in response.content.decode()


def test_the_channels_page_shows_only_the_host_of_a_webhook(page_as: Callable[[Role], Client]) -> None:
    NotificationChannelFactory(config={"url": "https://hooks.example.com/T0/secret-token"})

    content = page_as(Role.VIEWER).get(reverse("alerts:channels")).content.decode()

    assert "https://hooks.example.com/…" in content
    assert "secret-token" not in content


HOOK = "https://hooks.example.com/T0/secret-token"


@pytest.mark.parametrize(
    ("role", "whole"), [(Role.VIEWER, False), (Role.OPERATOR, False), (Role.ADMIN, True)]
)
def test_the_channel_pages_show_the_whole_config_to_those_who_may_change_it(
    page_as: Callable[[Role], Client], role: Role, whole: bool
) -> None:
    channel = NotificationChannelFactory(
        config={"url": HOOK, "template": "{{ status }}", "secret": "k3y-0123"}
    )
    client = page_as(role)

    listed = client.get(reverse("alerts:channels")).content.decode()
    shown = client.get(channel.get_absolute_url()).content.decode()

    for content in (listed, shown):
        assert (HOOK in content) == whole
        assert "k3y-0123" not in content
    assert ("{{ status }}" in shown) == whole
    assert "&quot;secret&quot;" not in shown  # the key itself, not only its value


def test_the_silence_form_labels_only_the_fields_people_fill_in(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    content = page_as(Role.OPERATOR).get(reverse("alerts:silences"), {"alert": alert.pk}).content.decode()

    assert f'type="hidden" name="alert" value="{alert.pk}"' in content
    assert "<label>Alert " not in content


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ADMIN])
def test_every_alerting_page_renders_real_rows_for_each_role(
    page_as: Callable[[Role], Client], role: Role
) -> None:
    channel = NotificationChannelFactory(name="ops-hook")
    alert = AlertFactory(
        rule=AlertRuleFactory(name="GpuTemperatureHigh", metric="DCGM_FI_DEV_GPU_TEMP"),
        annotations={"summary": "gpu-01 at 91"},
        acknowledged_at=timezone.now(),
    )
    alert.rule.channels.add(channel)
    SilenceFactory(comment="fan swap")
    Delivery.objects.create(
        channel=channel, status="failed", fingerprints=[alert.fingerprint], body="{}", error="timed out"
    )
    client = page_as(role)

    pages = {
        reverse("alerts:list"): "gpu-01 at 91",
        alert.get_absolute_url(): "timed out",
        reverse("alerts:rules"): "GpuTemperatureHigh",
        alert.rule.get_absolute_url(): "ops-hook",
        reverse("alerts:silences"): "fan swap",
        reverse("alerts:channels"): "ops-hook",
        channel.get_absolute_url(): "timed out",
        reverse("alerts:history"): "GpuTemperatureHigh",
    }
    for url, text in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert text in response.content.decode(), url
    editable = role == Role.ADMIN
    assert (reverse("alerts:rule_create") in client.get(reverse("alerts:rules")).content.decode()) == editable
    assert ("Send a test" in client.get(channel.get_absolute_url()).content.decode()) == editable


def test_every_page_shows_the_bell_to_those_who_may_view_alerts(page_as: Callable[[Role], Client]) -> None:
    content = page_as(Role.VIEWER).get(reverse("overview")).content.decode()

    assert 'id="alert-bell"' in content
    assert 'id="alert-toasts"' in content
    assert "alerts/live.js" in content


def test_a_failed_delivery_stands_out_on_the_channel_page(page_as: Callable[[Role], Client]) -> None:
    channel = NotificationChannelFactory(config={"url": "https://hooks.example.com/T0/secret-token"})
    Delivery.objects.create(
        channel=channel, status="failed", body="{}", attempts=3, error="HTTP 502", response_status=502
    )

    content = page_as(Role.VIEWER).get(channel.get_absolute_url()).content.decode()

    assert 'class="failed"' in content
    assert "HTTP 502" in content
    assert "secret-token" not in content


def test_an_admin_sends_a_test_from_the_channel_page(page_as: Callable[[Role], Client]) -> None:
    channel = NotificationChannelFactory(kind="log", config={})

    response = page_as(Role.ADMIN).post(reverse("alerts:channel_test", args=[channel.pk]), follow=True)

    delivery = Delivery.objects.get(channel=channel)
    assert delivery.test
    assert delivery.status == "delivered"
    assert "Test sent" in response.content.decode()


def test_an_operator_cannot_send_a_test(page_as: Callable[[Role], Client]) -> None:
    channel = NotificationChannelFactory(kind="log", config={})

    response = page_as(Role.OPERATOR).post(reverse("alerts:channel_test", args=[channel.pk]))

    assert response.status_code == 403
    assert not Delivery.objects.exists()


RULE = {
    "name": "GpuTemperatureHigh",
    "kind": "threshold",
    "metric": "DCGM_FI_DEV_GPU_TEMP",
    "event": "",
    "matchers": 'node=~"gpu-0[12]"',
    "op": ">",
    "threshold": "85",
    "for_seconds": "120",
    "keep_firing_seconds": "60",
    "severity": "critical",
    "summary": "{{ labels.node }} GPU {{ labels.gpu }} at {{ value }} C",
    "description": "",
    "enabled": "on",
}


def test_an_admin_creates_a_rule_in_the_editor_and_it_is_audited(page_as: Callable[[Role], Client]) -> None:
    channel = NotificationChannelFactory()

    response = page_as(Role.ADMIN).post(reverse("alerts:rule_create"), {**RULE, "channels": [channel.pk]})

    rule = AlertRule.objects.get()
    assert response["Location"] == rule.get_absolute_url()
    assert rule.matchers == [{"label": "node", "op": "=~", "value": "gpu-0[12]"}]
    assert (rule.threshold, rule.for_seconds, rule.keep_firing_seconds) == (85.0, 120, 60)
    assert list(rule.channels.all()) == [channel]
    event = AuditEvent.objects.get(content_type__model="alertrule", object_id=str(rule.pk), action="create")
    assert event.source == AuditEvent.Source.PAGE


def test_the_editor_offers_the_catalogues_metrics_grouped(page_as: Callable[[Role], Client]) -> None:
    content = page_as(Role.ADMIN).get(reverse("alerts:rule_create")).content.decode()

    assert '<optgroup label="Devices">' in content
    assert "DCGM_FI_DEV_GPU_TEMP" in content
    assert 'id="alert-catalog"' in content


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"metric": "gpu_utilization_percent"}, "metric", "gpu_utilization_percent"),
        ({"matchers": 'deployment="chat"'}, "matchers", "deployment"),
        ({"threshold": ""}, "threshold", ""),
        ({"summary": "{{ labels.__class__ }}"}, "summary", "Python internal"),
        ({"description": "{{ labels.node "}, "description", "does not parse"),
        ({"matchers": "node"}, "matchers", "cannot read a matcher"),
    ],
)
def test_the_editor_names_the_field_that_is_wrong(
    page_as: Callable[[Role], Client], change: dict[str, str], field: str, text: str
) -> None:
    response = page_as(Role.ADMIN).post(reverse("alerts:rule_create"), {**RULE, **change})

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors
    assert text in " ".join(errors[field])
    assert not AlertRule.objects.exists()


def test_an_admin_edits_a_rule(page_as: Callable[[Role], Client]) -> None:
    rule = AlertRuleFactory(name="GpuTemperatureHigh", metric="DCGM_FI_DEV_GPU_TEMP")
    client = page_as(Role.ADMIN)
    assert client.get(reverse("alerts:rule_edit", args=[rule.pk])).status_code == 200

    client.post(reverse("alerts:rule_edit", args=[rule.pk]), {**RULE, "threshold": "90"})

    rule.refresh_from_db()
    assert rule.threshold == 90.0


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_only_admins_open_the_rule_editor(page_as: Callable[[Role], Client], role: Role) -> None:
    client = page_as(role)

    assert client.get(reverse("alerts:rule_create")).status_code == 403
    assert client.post(reverse("alerts:rule_create"), RULE).status_code == 403
    assert not AlertRule.objects.exists()


def test_the_editor_suggests_label_values_of_a_catalogue_metric(page_as: Callable[[Role], Client]) -> None:
    client = page_as(Role.ADMIN)

    ok = client.get(reverse("alerts:label_values"), {"metric": "DCGM_FI_DEV_GPU_TEMP"})
    bad = client.get(reverse("alerts:label_values"), {"metric": "nope"})

    assert ok.status_code == 200
    assert ok.json()["metric"] == "DCGM_FI_DEV_GPU_TEMP"
    assert isinstance(ok.json()["labels"], dict)
    assert bad.status_code == 400
    assert "metric" in bad.json()


def test_page_two_of_the_alerts_page_is_page_two_of_the_same_list(page_as: Callable[[Role], Client]) -> None:
    rule = AlertRuleFactory()
    for n in range(51):  # open: a page of 50, and one on page 2
        AlertFactory(rule=rule, series={"node": f"gpu-{n:02d}"})
    _resolved(72, rule=rule, series={"node": "long-ago"})  # not in the default list
    client = page_as(Role.VIEWER)

    first = client.get(reverse("alerts:list"))
    second = client.get(reverse("alerts:list"), {"page": "2"})

    assert first.context["paginator"].count == second.context["paginator"].count == 51
    assert "long-ago" not in second.content.decode()
    assert second.context["filtered"] is False


EVENT_RULE = {
    **RULE,
    "name": "JobFailed",
    "kind": "event",
    "event": "job_failed",
    "matchers": 'kind="fine_tune"',
}


def test_an_event_rule_saved_with_threshold_fields_left_from_before_keeps_none_of_them(
    page_as: Callable[[Role], Client],
) -> None:
    # The editor hides the metric, comparison, threshold and "for" of an event rule; what was typed
    # there before the kind changed (even a threshold that is not a number) is blanked, not refused
    # on a field nobody can see.
    response = page_as(Role.ADMIN).post(reverse("alerts:rule_create"), {**EVENT_RULE, "threshold": "x"})

    rule = AlertRule.objects.get()
    assert response.status_code == 302, response.context["form"].errors
    assert (rule.kind, rule.event, rule.metric, rule.threshold, rule.for_seconds) == (
        "event",
        "job_failed",
        "",
        None,
        0,
    )


def test_a_threshold_rule_edited_from_an_event_rule_loses_its_event(
    page_as: Callable[[Role], Client],
) -> None:
    rule = AlertRuleFactory(name="JobFailed", kind="event", event="job_failed", metric="", threshold=None)
    edit = reverse("alerts:rule_edit", args=[rule.pk])

    response = page_as(Role.ADMIN).post(edit, {**RULE, "event": "job_failed"})

    assert response.status_code == 302, response.context["form"].errors
    rule.refresh_from_db()
    assert (rule.kind, rule.event, rule.metric) == ("threshold", "", "DCGM_FI_DEV_GPU_TEMP")


def test_the_editor_hints_the_labels_of_each_event(page_as: Callable[[Role], Client]) -> None:
    response = page_as(Role.ADMIN).get(reverse("alerts:rule_create"))

    hints = response.context["event_labels"]
    assert {"job", "kind", "queue", "alertname", "severity"} <= set(hints["job_failed"])
    assert 'id="alert-event-labels"' in response.content.decode()


def test_a_summary_may_use_the_raw_value(page_as: Callable[[Role], Client]) -> None:
    # Checked over a sample alert (labels, value, raw_value), not over a webhook body's payload.
    summary = "{{ labels.node }} at {{ (raw_value * 100)|round(1) }} %"

    response = page_as(Role.ADMIN).post(reverse("alerts:rule_create"), {**RULE, "summary": summary})

    assert response.status_code == 302, response.context["form"].errors
    assert AlertRule.objects.get().summary == summary


def test_acknowledging_over_https_never_sends_you_back_over_http(make_user: Callable[..., Any]) -> None:
    alert = AlertFactory()
    client = Client()
    client.force_login(make_user(Role.OPERATOR))

    response = client.post(
        reverse("alerts:acknowledge", args=[alert.pk]),
        {"expires": "1", "next": "http://testserver/alerts/"},
        secure=True,
    )

    assert response["Location"] == alert.get_absolute_url()
