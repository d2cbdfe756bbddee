"""Notification channels: the kinds and what each one's config must say.

- webhook: {"url": "http(s)://…", "max_alerts": <int ≥ 0, optional; 0 = all>}
  receives Alertmanager's webhook payload (see webhook.py)
  "template": <a Jinja template of the body, optional; rendered sandboxed>,
  "secret": <a key, optional; signs each body with HMAC-SHA256 in X-MOC-Signature>}
- email: {"to": ["ops@example.com", …]}
- alertmanager: {"url": "http://alertmanager:9093"}: alerts are posted to its API v2
- log: {"level": "info" | "warning" | "error", optional}; writes to MOC's log
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from apps.alerts.domain.templates import template_errors


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"
    ALERTMANAGER = "alertmanager"
    LOG = "log"


LOG_LEVELS = ("info", "warning", "error")
MIN_SECRET_CHARS = 16
REDACTED = "…"
_KEYS = {
    ChannelKind.WEBHOOK: ({"url"}, {"max_alerts", "template", "secret"}),
    ChannelKind.EMAIL: ({"to"}, set()),
    ChannelKind.ALERTMANAGER: ({"url"}, set()),
    ChannelKind.LOG: (set(), {"level"}),
}
# Deliberately loose: one @, something on each side, a dot in the domain, no spaces.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def config_errors(kind: str, config: Any) -> list[str]:
    """Everything wrong with a channel's config for its kind; empty when it is valid."""
    if not isinstance(config, dict):
        return ["must be a JSON object"]
    required, optional = _KEYS[ChannelKind(kind)]
    errors = [f"{key}: is required for {kind} channels" for key in sorted(required - config.keys())]
    errors += [
        f"{key}: is not a setting of {kind} channels" for key in sorted(config.keys() - required - optional)
    ]
    if "url" in config and not _http_url(config["url"]):
        errors.append(f"url: must be an http:// or https:// URL with a host, got {config['url']!r}")
    if "max_alerts" in config and not _count(config["max_alerts"]):
        errors.append("max_alerts: must be a whole number, 0 or more")
    if "to" in config:
        errors += _address_errors(config["to"])
    if "template" in config:
        errors += template_errors(config["template"])
    if "secret" in config and not (
        isinstance(config["secret"], str) and len(config["secret"]) >= MIN_SECRET_CHARS
    ):
        errors.append(f"secret: must be text of at least {MIN_SECRET_CHARS} characters")
    if "level" in config and config["level"] not in LOG_LEVELS:
        errors.append(f"level: must be one of {', '.join(LOG_LEVELS)}")
    return errors


def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _address_errors(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        return ["to: must be a non-empty list of email addresses"]
    bad = [a for a in value if not isinstance(a, str) or not _EMAIL.fullmatch(a)]
    return [f"to: {a!r} is not an email address" for a in bad]


def redact_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as shown to people who may not change it: a webhook URL keeps only its
    scheme and host, since paths and queries often carry tokens, and a signing secret is hidden.
    A template is shown as it is (it is how the body is made, not a key)."""
    if kind != ChannelKind.WEBHOOK:
        return config
    shown = dict(config)
    if _http_url(config.get("url")):
        parts = urlsplit(config["url"])
        shown["url"] = f"{parts.scheme}://{parts.hostname}/{REDACTED}"
    if "secret" in config:
        shown["secret"] = REDACTED
    return shown
