"""The alerting pages: alerts firing first, rules, silences (with the operators' form) and channels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, Silence
from apps.core.domain.roles import Role
from tests.alerts.factories import AlertFactory, AlertRuleFactory, NotificationChannelFactory, SilenceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def page_as(make_user: Callable[..., Any]) -> Callable[[Role], Client]:
    def make(role: Role) -> Client:
        client = Client()
        client.force_login(make_user(role))
        return client

    return make


@pytest.mark.parametrize("name", ["alerts:list", "alerts:rules", "alerts:silences", "alerts:channels"])
def test_every_alerting_page_requires_login(name: str) -> None:
    response = Client().get(reverse(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["alerts:list", "alerts:rules", "alerts:silences", "alerts:channels"])
def test_every_alerting_page_says_what_to_do_when_empty(page_as: Callable[[Role], Client], name: str) -> None:
    response = page_as(Role.VIEWER).get(reverse(name))

    assert response.status_code == 200
    assert 'class="empty"' in response.content.decode()


def test_the_alerts_page_lists_firing_alerts_first(page_as: Callable[[Role], Client]) -> None:
    resolved = AlertFactory(state=AlertState.RESOLVED, series={"n": "1"})
    firing = AlertFactory(series={"n": "2"})

    response = page_as(Role.VIEWER).get(reverse("alerts:list"))

    assert list(response.context["object_list"]) == [firing, resolved]


def test_the_alerts_page_shows_a_severity_badge(page_as: Callable[[Role], Client]) -> None:
    AlertFactory(rule=AlertRuleFactory(severity="critical"))

    response = page_as(Role.VIEWER).get(reverse("alerts:list"))

    assert '<span class="badge bad">critical</span>' in response.content.decode()


def test_the_alerts_page_marks_silenced_alerts(page_as: Callable[[Role], Client]) -> None:
    SilenceFactory(matchers=[{"label": "node", "op": "=", "value": "gpu-01"}])
    AlertFactory(series={"node": "gpu-01"})

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

    response = page_as(Role.OPERATOR).post(reverse("alerts:acknowledge", args=[alert.pk]))

    assert response.status_code == 302
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is not None


def test_a_viewer_cannot_acknowledge_from_the_page(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    assert page_as(Role.VIEWER).post(reverse("alerts:acknowledge", args=[alert.pk])).status_code == 403


def test_the_rule_page_lists_its_recent_alerts(page_as: Callable[[Role], Client]) -> None:
    alert = AlertFactory()

    response = page_as(Role.VIEWER).get(alert.rule.get_absolute_url())

    assert list(response.context["recent_alerts"]) == [alert]


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

    assert response.status_code == 200
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
