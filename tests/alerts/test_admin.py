from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, AlertRule, NotificationChannel, Silence
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory, SilenceFactory

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


def test_the_alert_changelist_filters_by_state(admin_client_: Client) -> None:
    AlertFactory(series={"n": "1"}, state=AlertState.RESOLVED)
    firing = AlertFactory(series={"n": "2"})

    response = admin_client_.get(reverse("admin:alerts_alert_changelist"), {"state__exact": "firing"})

    assert list(response.context["cl"].result_list) == [firing]


def test_the_admin_refuses_a_channel_with_a_bad_webhook_url(admin_client_: Client) -> None:
    response = admin_client_.post(
        reverse("admin:alerts_notificationchannel_add"),
        {"name": "ops", "kind": "webhook", "config": '{"url": "nope"}', "enabled": "on"},
    )

    assert response.status_code == 200
    assert "config" in response.context["adminform"].form.errors
    assert not NotificationChannel.objects.exists()


def test_the_admin_refuses_a_rule_with_a_bad_regex(admin_client_: Client) -> None:
    response = admin_client_.post(
        reverse("admin:alerts_alertrule_add"),
        {
            "name": "GpuHot",
            "metric": "gpu_temperature_celsius",
            "op": ">",
            "threshold": "85",
            "for_seconds": "0",
            "severity": "warning",
            "matchers": '[{"label": "node", "op": "=~", "value": "("}]',
        },
    )

    assert "matchers" in response.context["adminform"].form.errors


def test_alerts_cannot_be_added_by_hand(admin_client_: Client) -> None:
    assert admin_client_.get(reverse("admin:alerts_alert_add")).status_code == 403
