"""What each kind of notification channel's config must say (pure)."""

from __future__ import annotations

import pytest

from apps.alerts.domain.channels import config_errors, redact_config


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


def test_redacting_leaves_other_kinds_alone() -> None:
    assert redact_config("email", {"to": ["a@b.io"]}) == {"to": ["a@b.io"]}


def test_a_webhook_template_and_secret_are_checked() -> None:
    errors = config_errors(
        "webhook", {"url": "https://h.example.com/x", "template": "{{ ''.__class__ }}", "secret": "short"}
    )

    assert errors[0].startswith("template: reads the attribute '__class__'")
    assert errors[1] == "secret: must be text of at least 16 characters"


def test_redacting_hides_the_secret_and_keeps_the_template() -> None:
    config = {"url": "https://h.example.com/x", "template": "{{ status }}", "secret": "s" * 20}

    assert redact_config("webhook", config) == {
        "url": "https://h.example.com/…",
        "template": "{{ status }}",
        "secret": "…",
    }
