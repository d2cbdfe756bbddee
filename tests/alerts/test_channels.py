"""What each kind of notification channel's config must say, and what of it is shown to whom."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.alerts.domain.channels import (
    HIDDEN,
    config_errors,
    redact_config,
    redact_url,
    with_kept_secret,
    without_secret,
)
from tests.alerts.factories import NotificationChannelFactory


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("webhook", {"url": "https://hooks.example.com/x"}),
        ("webhook", {"url": "http://10.0.0.5:9000/alerts", "max_alerts": 10}),
        ("email", {"to": ["ops@example.com", "gpu-team@example.org"]}),
        ("log", {}),
        ("log", {"level": "error"}),
    ],
)
def test_valid_configs_have_no_errors(kind: str, config: dict) -> None:
    assert config_errors(kind, config) == []


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "https://", "https:///path", 42])
def test_a_webhook_needs_an_http_url_with_a_host(url: object) -> None:
    [error] = config_errors("webhook", {"url": url})

    assert error.startswith("url: must be an http:// or https:// URL")


def test_a_webhook_without_a_url_is_refused() -> None:
    assert config_errors("webhook", {}) == ["url: is required for webhook channels"]


def test_an_email_channel_needs_addresses() -> None:
    assert config_errors("email", {"to": []}) == ["to: must be a non-empty list of email addresses"]


def test_a_bad_email_address_is_named() -> None:
    assert config_errors("email", {"to": ["ops@example.com", "ops"]}) == ["to: 'ops' is not an email address"]


def test_an_unknown_setting_is_named() -> None:
    assert config_errors("log", {"colour": "red"}) == ["colour: is not a setting of log channels"]


def test_a_config_must_be_an_object() -> None:
    assert config_errors("log", "info") == ["must be a JSON object"]


def test_redacting_a_webhook_keeps_only_scheme_and_host() -> None:
    shown = redact_config(
        "webhook", {"url": "https://hooks.example.com/T000/secret?token=x", "max_alerts": 5}
    )

    assert shown == {"url": "https://hooks.example.com/…", "max_alerts": 5}


def test_redacting_leaves_settings_without_keys_alone() -> None:
    assert redact_config("email", {"to": ["a@b.io"]}) == {"to": ["a@b.io"]}


def test_a_webhook_template_and_secret_are_checked() -> None:
    errors = config_errors(
        "webhook", {"url": "https://h.example.com/x", "template": "{{ ''.__class__ }}", "secret": "short"}
    )

    assert errors[0].startswith("template: reads the attribute '__class__'")
    assert errors[1] == "secret: must be text of at least 16 characters"


def test_redacting_hides_the_secret_and_the_template() -> None:
    # A receiver that wants its key in the body (PagerDuty's routing_key) gets it from the template.
    config = {"url": "https://h.example.com/x", "template": '{"routing_key": "R0UT1NG"}', "secret": "s" * 20}

    assert redact_config("webhook", config) == {
        "url": "https://h.example.com/…",
        "template": HIDDEN,
        "secret": "…",
    }


@pytest.mark.parametrize(
    ("kind", "url", "shown"),
    [
        ("alertmanager", "http://user:pw@am.example:9093", "http://…@am.example:9093"),
        ("alertmanager", "https://am.example/prefix?token=t0k", "https://am.example/prefix?…"),
        ("alertmanager", "http://am.example:9093", "http://am.example:9093"),
        ("webhook", "https://u:pw@h.example.com:8443/T0/x?t=1", "https://…@h.example.com:8443/…"),
    ],
)
def test_a_url_is_shown_without_credentials_for_every_kind(kind: str, url: str, shown: str) -> None:
    assert redact_url(kind, url) == shown
    assert redact_config(kind, {"url": url}) == {"url": shown}


def test_the_secret_is_left_out_of_an_editors_view_and_kept_when_they_save_without_it() -> None:
    saved = {"url": "https://h.example.com/x", "secret": "s" * 20}
    shown = without_secret(saved)

    assert shown == {"url": "https://h.example.com/x"}
    assert with_kept_secret(shown, saved=saved, same_kind=True) == saved
    assert with_kept_secret({**shown, "secret": ""}, saved=saved, same_kind=True) == shown
    assert with_kept_secret({**shown, "secret": "n" * 20}, saved=saved, same_kind=True)["secret"] == "n" * 20
    assert with_kept_secret(shown, saved=saved, same_kind=False) == shown
    assert with_kept_secret(shown, saved=None, same_kind=False) == shown


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["alerts:channels", "alerts:channel_detail"])
def test_viewers_pages_show_no_url_credentials_and_no_template(
    client: Client, viewer: object, page: str
) -> None:
    am = NotificationChannelFactory(kind="alertmanager", config={"url": "http://user:pw@am.example:9093"})
    hook = NotificationChannelFactory(
        config={"url": "https://h.example.com/x", "template": '{"routing_key": "R0UT1NG"}'}
    )
    client.force_login(viewer)

    pages = [reverse(page)] if page == "alerts:channels" else [reverse(page, args=[c.pk]) for c in (am, hook)]
    html = "".join(client.get(url).content.decode() for url in pages)

    assert "am.example:9093" in html
    assert "pw@" not in html
    assert "R0UT1NG" not in html
