from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.alerts.domain.states import AlertState
from apps.alerts.models import (
    Alert,
    AlertRule,
    Delivery,
    InhibitRule,
    NotificationChannel,
    NotificationGroup,
    Silence,
)
from apps.core.models import AuditEvent
from tests.alerts.factories import (
    AlertFactory,
    AlertRuleFactory,
    DeliveryFactory,
    InhibitRuleFactory,
    NotificationChannelFactory,
    SilenceFactory,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", [AlertRule, Alert, Silence, NotificationChannel])
def test_the_changelist_loads_with_a_search(admin_client_: Client, model: type) -> None:
    AlertFactory(rule=AlertRuleFactory(name="GpuHot"))
    SilenceFactory(comment="GpuHot maintenance")
    NotificationChannelFactory(name="GpuHot-hook")

    response = admin_client_.get(
        reverse(f"admin:alerts_{model._meta.model_name}_changelist"), {"q": "GpuHot"}
    )

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1


@pytest.mark.parametrize(
    "model", [AlertRule, Alert, Silence, NotificationChannel, InhibitRule, NotificationGroup, Delivery]
)
def test_every_alerting_table_has_an_admin_page_that_loads(admin_client_: Client, model: type) -> None:
    delivery = DeliveryFactory()
    NotificationGroup.objects.create(channel=delivery.channel, key="k", first_seen_at=delivery.created_at)
    InhibitRuleFactory()
    SilenceFactory()
    AlertFactory()

    changelist = admin_client_.get(reverse(f"admin:alerts_{model._meta.model_name}_changelist"))
    row = model.objects.first()
    change = admin_client_.get(reverse(f"admin:alerts_{model._meta.model_name}_change", args=[row.pk]))

    assert (changelist.status_code, change.status_code) == (200, 200)
    assert len(changelist.context["cl"].result_list) >= 1


@pytest.mark.parametrize("model", [Alert, Delivery, NotificationGroup])
def test_rows_moc_writes_cannot_be_added_by_hand(admin_client_: Client, model: type) -> None:
    assert admin_client_.get(reverse(f"admin:alerts_{model._meta.model_name}_add")).status_code == 403


def test_an_alert_cannot_be_saved_over_what_moc_wrote_meanwhile(admin_client_: Client) -> None:
    alert = AlertFactory(state=AlertState.FIRING)
    url = reverse("admin:alerts_alert_change", args=[alert.pk])

    page = admin_client_.get(url).content.decode()
    admin_client_.post(url, {"state": AlertState.RESOLVED, "silenced": "on"})

    assert 'name="_save"' not in page
    assert Alert.objects.filter(pk=alert.pk, state=AlertState.FIRING, silenced=False).exists()
    assert not AuditEvent.objects.filter(content_type__model="alert", action="update").exists()


def test_an_alert_can_still_be_deleted_in_the_admin(admin_client_: Client) -> None:
    alert = AlertFactory()

    admin_client_.post(reverse("admin:alerts_alert_delete", args=[alert.pk]), {"post": "yes"})

    assert not Alert.objects.exists()


def test_a_silence_is_expired_never_deleted_in_the_admin(admin_client_: Client) -> None:
    silence = SilenceFactory()

    response = admin_client_.post(reverse("admin:alerts_silence_delete", args=[silence.pk]), {"post": "yes"})
    changelist = admin_client_.get(reverse("admin:alerts_silence_changelist"))

    assert response.status_code == 403
    assert Silence.objects.filter(pk=silence.pk).exists()
    assert "delete_selected" not in changelist.content.decode()


def test_a_delivery_cannot_be_edited_by_hand(admin_client_: Client) -> None:
    delivery = DeliveryFactory(status="failed")

    admin_client_.post(
        reverse("admin:alerts_delivery_change", args=[delivery.pk]), {"status": "delivered", "body": "{}"}
    )

    assert Delivery.objects.get(pk=delivery.pk).status == "failed"


def test_the_rule_form_picks_channels_side_by_side(admin_client_: Client) -> None:
    response = admin_client_.get(reverse("admin:alerts_alertrule_add"))

    assert "channels" in response.context["adminform"].form.fields
    assert 'class="selectfilter"' in response.content.decode()


def test_the_alert_changelist_filters_by_state(admin_client_: Client) -> None:
    AlertFactory(series={"n": "1"}, state=AlertState.RESOLVED)
    firing = AlertFactory(series={"n": "2"})

    response = admin_client_.get(reverse("admin:alerts_alert_changelist"), {"state__exact": "firing"})

    assert list(response.context["cl"].result_list) == [firing]


def test_the_rule_changelist_filters_by_kind(admin_client_: Client) -> None:
    AlertRuleFactory()
    event = AlertRuleFactory(kind="event", event="job_failed", metric="", threshold=None)

    response = admin_client_.get(reverse("admin:alerts_alertrule_changelist"), {"kind__exact": "event"})

    assert list(response.context["cl"].result_list) == [event]


def test_the_admin_refuses_a_channel_with_a_bad_webhook_url(admin_client_: Client) -> None:
    response = admin_client_.post(
        reverse("admin:alerts_notificationchannel_add"),
        {
            "name": "ops",
            "kind": "webhook",
            "config": '{"url": "nope"}',
            "enabled": "on",
            "group_by": '["alertname"]',
        },
    )

    assert response.status_code == 200
    assert "config" in response.context["adminform"].form.errors
    assert not NotificationChannel.objects.exists()


def test_the_admin_refuses_a_channel_with_a_bad_group_by(admin_client_: Client) -> None:
    response = admin_client_.post(
        reverse("admin:alerts_notificationchannel_add"),
        {
            "name": "ops",
            "kind": "log",
            "config": "{}",
            "group_by": '["node name"]',
            "group_wait_s": "30",
            "group_interval_s": "300",
            "repeat_interval_s": "14400",
        },
    )

    assert "group_by" in response.context["adminform"].form.errors


def _rule_form(**fields: str) -> dict[str, str]:
    return {
        "name": "GpuHot",
        "kind": "threshold",
        "metric": "DCGM_FI_DEV_GPU_TEMP",
        "op": ">",
        "threshold": "85",
        "for_seconds": "0",
        "keep_firing_seconds": "0",
        "severity": "warning",
        "matchers": "[]",
        **fields,
    }


def test_the_admin_refuses_a_rule_with_a_bad_regex(admin_client_: Client) -> None:
    response = admin_client_.post(
        reverse("admin:alerts_alertrule_add"),
        _rule_form(matchers='[{"label": "node", "op": "=~", "value": "("}]'),
    )

    assert "matchers" in response.context["adminform"].form.errors


def test_the_admin_refuses_a_rule_over_an_unknown_metric(admin_client_: Client) -> None:
    response = admin_client_.post(reverse("admin:alerts_alertrule_add"), _rule_form(metric="gpu_temp"))

    assert "unknown metric" in response.context["adminform"].form.errors["metric"][0]
    assert not AlertRule.objects.exists()


@pytest.mark.parametrize(
    ("field", "text", "why"),
    [
        ("summary", "{{ ''.__class__.__mro__ }}", "a Python internal"),
        ("description", "{% for i in range(10**9) %}{{ i }}{% endfor %}", "more than"),
        ("summary", "{{ labels.node ", "does not parse"),
    ],
)
def test_the_admin_refuses_annotations_the_api_and_the_editor_refuse(
    admin_client_: Client, field: str, text: str, why: str
) -> None:
    response = admin_client_.post(reverse("admin:alerts_alertrule_add"), _rule_form(**{field: text}))

    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert why in errors[field][0]
    assert not AlertRule.objects.exists()


def test_the_admin_saves_a_rule_the_catalogue_knows(admin_client_: Client) -> None:
    response = admin_client_.post(reverse("admin:alerts_alertrule_add"), _rule_form())

    assert response.status_code == 302
    assert AlertRule.objects.get().metric == "DCGM_FI_DEV_GPU_TEMP"


SIGNING_KEY = "s3cret-signing-key-0123456789"


def _channel_form(channel: NotificationChannel, config: str) -> dict[str, object]:
    return {
        "name": channel.name,
        "kind": channel.kind,
        "config": config,
        "enabled": "on",
        "send_resolved": "on",
        "group_by": json.dumps(channel.group_by),
        "group_wait_s": channel.group_wait_s,
        "group_interval_s": channel.group_interval_s,
        "repeat_interval_s": channel.repeat_interval_s,
    }


def test_the_channel_form_never_shows_the_signing_secret_and_keeps_it_on_save(admin_client_: Client) -> None:
    channel = NotificationChannelFactory(config={"url": "https://a.example.com/", "secret": SIGNING_KEY})
    url = reverse("admin:alerts_notificationchannel_change", args=[channel.pk])

    page = admin_client_.get(url).content.decode()
    saved = admin_client_.post(url, _channel_form(channel, '{"url": "https://b.example.com/"}'))
    channel.refresh_from_db()

    assert SIGNING_KEY not in page
    assert "webhook bodies are signed" in page
    assert saved.status_code == 302
    assert channel.config == {"url": "https://b.example.com/", "secret": SIGNING_KEY}


def test_an_empty_secret_in_the_channel_form_removes_it(admin_client_: Client) -> None:
    channel = NotificationChannelFactory(config={"url": "https://a.example.com/", "secret": SIGNING_KEY})
    url = reverse("admin:alerts_notificationchannel_change", args=[channel.pk])

    admin_client_.post(url, _channel_form(channel, '{"url": "https://a.example.com/", "secret": ""}'))
    channel.refresh_from_db()

    assert channel.config == {"url": "https://a.example.com/"}


def _silence_form(ends_at: dt.datetime, **extra: object) -> dict[str, object]:
    start = timezone.localtime() - dt.timedelta(minutes=1)
    end = timezone.localtime(ends_at)
    return {
        "matchers": '[{"label": "node", "op": "=", "value": "gpu-01"}]',
        "starts_at_0": start.strftime("%Y-%m-%d"),
        "starts_at_1": start.strftime("%H:%M:%S"),
        "ends_at_0": end.strftime("%Y-%m-%d"),
        "ends_at_1": end.strftime("%H:%M:%S"),
        "comment": "maintenance",
        **extra,
    }


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"ends_at": -dt.timedelta(seconds=30)}, "ends_at"),
        ({"ends_at": dt.timedelta(hours=1), "expire_on_resolve": "on"}, "expire_on_resolve"),
    ],
)
def test_a_silence_added_in_the_admin_gets_the_services_checks(
    admin_client_: Client, form: dict[str, object], field: str
) -> None:
    ends_at = timezone.now() + form.pop("ends_at")

    response = admin_client_.post(reverse("admin:alerts_silence_add"), _silence_form(ends_at, **form))

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not Silence.objects.exists()


def test_a_silence_added_in_the_admin_mutes_its_alerts_at_once(admin_client_: Client) -> None:
    alert = AlertFactory()

    response = admin_client_.post(
        reverse("admin:alerts_silence_add"), _silence_form(timezone.now() + dt.timedelta(hours=1))
    )

    assert response.status_code == 302
    alert.refresh_from_db()
    silence = Silence.objects.get()
    assert alert.silenced
    assert silence.created_by is not None
    assert AuditEvent.objects.filter(action="create", content_type__model="silence").exists()


def test_an_expired_silence_cannot_be_changed_in_the_admin(admin_client_: Client) -> None:
    silence = SilenceFactory(
        starts_at=timezone.now() - dt.timedelta(hours=2), ends_at=timezone.now() - dt.timedelta(hours=1)
    )

    response = admin_client_.post(
        reverse("admin:alerts_silence_change", args=[silence.pk]),
        _silence_form(timezone.now() + dt.timedelta(hours=1)),
    )

    assert response.status_code == 200
    assert "expired" in str(response.context["adminform"].form.non_field_errors())
    assert Silence.objects.get(pk=silence.pk).ends_at == silence.ends_at


def test_an_inhibit_rules_equal_takes_only_label_names_in_the_admin(admin_client_: Client) -> None:
    response = admin_client_.post(
        reverse("admin:alerts_inhibitrule_add"),
        {
            "name": "node-down-mutes-devices",
            "source_matchers": '[{"label": "alertname", "op": "=", "value": "NodeDown"}]',
            "target_matchers": '[{"label": "device", "op": "=~", "value": ".+"}]',
            "equal": '["node", "not a label"]',
            "enabled": "on",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["equal"] == ["'not a label' is not a label name"]
    assert not InhibitRule.objects.exists()
