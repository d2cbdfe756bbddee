"""Notification channels: the kinds and what each one's config must say.

- webhook: {"url": "http(s)://…", "max_alerts": <int ≥ 0, optional; 0 = all>,
  "template": <a Jinja template of the body, optional; rendered sandboxed>,
  "secret": <a key, optional; signs each body with HMAC-SHA256 in X-MOC-Signature>}
  receives Alertmanager's webhook payload (see webhook.py), or its template rendered over it
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
HIDDEN = "(hidden: may hold a key)"
# A webhook's signing key: write-only, see without_secret.
SECRET = "secret"
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
    if SECRET in config and not (isinstance(config[SECRET], str) and len(config[SECRET]) >= MIN_SECRET_CHARS):
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


def redact_url(kind: str, url: str) -> str:
    """A channel URL as shown to people who may not change the channel. Credentials in it
    (`http://user:pw@host`, the only way to reach a basic-auth Alertmanager) become "…@"; a
    webhook keeps only its scheme and host, since receivers put tokens in paths and queries
    (Slack, Teams); an Alertmanager URL keeps its path (a route prefix) but not its query."""
    if not _http_url(url):
        return REDACTED
    parts = urlsplit(url)
    _, at, host = parts.netloc.rpartition("@")
    shown = f"{parts.scheme}://{REDACTED + at if at else ''}{host}"
    if kind == ChannelKind.WEBHOOK:
        return f"{shown}/{REDACTED}"
    return shown + parts.path + (f"?{REDACTED}" if parts.query else "")


def redact_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as shown to people who may not change the channel: URLs without credentials
    (see redact_url), and neither the signing secret nor a webhook's body template, which is where
    receivers that want their key in the body (PagerDuty's routing_key, Opsgenie) get it."""
    shown = dict(config)
    if isinstance(config.get("url"), str):
        shown["url"] = redact_url(kind, config["url"])
    if "template" in config:
        shown["template"] = HIDDEN
    if SECRET in config:
        shown[SECRET] = REDACTED
    return shown


def without_secret(config: dict[str, Any]) -> dict[str, Any]:
    """The config as shown to those who may change it: everything but the signing secret, which is
    write-only (never shown, not even to admins, who may replace it)."""
    return {key: value for key, value in config.items() if key != SECRET}


def with_kept_secret(
    config: dict[str, Any], *, saved: dict[str, Any] | None, same_kind: bool
) -> dict[str, Any]:
    """A config written by someone who never saw the secret (see without_secret): without a
    "secret" it keeps the `saved` config's one, unless the kind changes; "secret": "" removes it."""
    config = dict(config)
    if config.get(SECRET) == "":
        del config[SECRET]
        return config
    kept = (saved or {}).get(SECRET)
    if SECRET not in config and kept and same_kind:
        config[SECRET] = kept
    return config
