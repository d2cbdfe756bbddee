"""The audit log: every write made through the API, the pages or the admin is recorded.

Plain create/update/delete of rows is caught by model signals while a request is being
served (so no write path can forget it); commands that are not a row change (cancel a
job, revoke a key, log in) call `record()` themselves. Writes made by workers and beat
carry no request and are not audited: they are MOC acting, not a person.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import decimal
import ipaddress
import re
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import user_logged_in, user_logged_out
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest
from rest_framework_api_key.models import AbstractAPIKey

from apps.core import events
from apps.core.models import AuditEvent

_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "moc_audit_request", default=None
)

# Tables whose writes are bookkeeping, not operator actions.
_SKIP_MODELS = {
    "core.auditevent",
    "core.taskdelivery",
    "core.outboxmessage",
    "sessions.session",
    "admin.logentry",
    "contenttypes.contenttype",
    "auth.permission",
    "axes.accessattempt",
    "axes.accesslog",
    "axes.accessfailurelog",
    "django_celery_beat.periodictasks",
}
# Saves that touch only these fields are side effects of reading (logins, key use).
_SILENT_FIELDS = {"last_login", "last_used_at"}
_MASKED_FIELDS = {"password", "hashed_key"}
# An API key's primary key, "<prefix>.sha512$$<hash>", shows up in admin URLs.
_KEY_HASH = re.compile(r"([A-Za-z0-9]{8})\.[a-z0-9_]+\$\$[0-9a-f]+")


def bind_request(request: HttpRequest) -> contextvars.Token:
    return _request.set(request)


def unbind_request(token: contextvars.Token) -> None:
    _request.reset(token)


def current_request() -> HttpRequest | None:
    return _request.get()


def _source(request: HttpRequest) -> str:
    path = request.path
    if path.startswith("/api/"):
        return AuditEvent.Source.API
    if path.startswith("/admin/"):
        return AuditEvent.Source.ADMIN
    return AuditEvent.Source.PAGE


def _ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.is_loopback:
        return True
    for network in getattr(settings, "MOC_TRUSTED_PROXIES", []):
        try:
            if address in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_ip(request: HttpRequest) -> str | None:
    """The caller's address: walking back from the peer through X-Forwarded-For (right to
    left), the first hop that is not a trusted proxy (loopback or MOC_TRUSTED_PROXIES).

    Each trusted proxy vouches for the hop it appended, so a chain load balancer → nginx →
    gunicorn, with the load balancer in MOC_TRUSTED_PROXIES, gives the client; what an
    untrusted hop (the client itself) wrote further left is never believed. A hop that is
    not an address ends the walk rather than being stored.
    """
    address = _ip(request.META.get("REMOTE_ADDR"))
    if address is None:
        return None
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    while _trusted(address) and hops:
        hop = _ip(hops.pop())
        if hop is None:
            break
        address = hop
    return str(address)


def record(
    action: str,
    obj: models.Model | None = None,
    *,
    changes: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> None:
    """Record one audited action by the current request's user.

    The row is written in the same transaction as the change it describes, so neither
    exists without the other; the live notice goes out once that transaction commits.
    """
    request = request or current_request()
    if request is None:
        return
    user = getattr(request, "user", None)
    key = getattr(request, "auth", None)
    prefix = getattr(key, "prefix", "") if key is not None and hasattr(key, "hashed_key") else ""
    actor = user if user is not None and user.is_authenticated else None
    label = actor.get_username() if actor else "anonymous"
    if prefix:
        label = f"{label} (key {prefix})"
    event = AuditEvent(
        actor=actor,
        actor_label=label[:200],
        api_key_prefix=prefix,
        action=action,
        source=_source(request),
        content_type=ContentType.objects.get_for_model(obj) if obj is not None else None,
        object_id=_object_id(obj),
        object_repr=str(obj)[:200] if obj is not None else "",
        changes=changes or {},
        remote_addr=client_ip(request),
        request_path=_KEY_HASH.sub(r"\1…", request.path)[:300],
    )
    event.save()
    events.publish_on_commit(events.ACTIVITY_GROUP, "activity.event", _brief(event))


def _object_id(obj: models.Model | None) -> str:
    if obj is None or obj.pk is None:
        return ""
    # An API key's primary key is "<prefix>.<hash>"; the prefix names it without the hash.
    return obj.prefix if isinstance(obj, AbstractAPIKey) else str(obj.pk)


def _brief(event: Any) -> dict[str, Any]:
    return {
        "id": event.pk,
        "at": event.created_at.isoformat() if event.created_at else None,
        "actor": event.actor_label,
        "action": event.action,
        "object": event.object_repr,
        "source": event.source,
    }


def _label(instance: models.Model) -> str:
    return instance._meta.label_lower


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return f"<{len(value)} bytes>"
    return value


def _field_values(instance: models.Model) -> dict[str, Any]:
    values = {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}
    if isinstance(instance, AbstractAPIKey):
        del values["id"]  # "<prefix>.<hash>"; the prefix field already names the key
    return values


def _diff(before: dict[str, Any], after: dict[str, Any], masked: set[str]) -> dict[str, list[Any]]:
    changes = {}
    for name, new in after.items():
        old = before.get(name)
        if old != new:
            changes[name] = ["***", "***"] if name in masked else [_jsonable(old), _jsonable(new)]
    return changes


def _masked(instance: models.Model) -> set[str]:
    """Fields never written to the audit log: passwords, key hashes, and what a model declares
    secret in `moc_audit_redact` (e.g. a notification channel's config with its tokens)."""
    return _MASKED_FIELDS | set(getattr(instance, "moc_audit_redact", ()))


def _audited(instance: models.Model, update_fields: Any) -> bool:
    if current_request() is None or _label(instance) in _SKIP_MODELS:
        return False
    return not (update_fields and set(update_fields) <= _SILENT_FIELDS)


@receiver(pre_save, dispatch_uid="moc-audit-pre-save")
def _remember_before(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if not _audited(instance, kwargs.get("update_fields")) or instance.pk is None:
        return
    row = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = _field_values(row) if row is not None else None


@receiver(post_save, dispatch_uid="moc-audit-post-save")
def _record_save(sender: type[models.Model], instance: models.Model, created: bool, **kwargs: Any) -> None:
    if not _audited(instance, kwargs.get("update_fields")):
        return
    before = getattr(instance, "_audit_before", None)
    after = _field_values(instance)
    masked = _masked(instance)
    if created or before is None:
        record("create", instance, changes=_diff({}, after, masked))
        return
    changes = _diff(before, after, masked)
    changes.pop("updated_at", None)
    if changes:
        record("update", instance, changes=changes)


@receiver(post_delete, dispatch_uid="moc-audit-post-delete")
def _record_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    if _audited(instance, None):
        record("delete", instance)


@receiver(m2m_changed, dispatch_uid="moc-audit-m2m")
def _record_membership(
    sender: Any,
    instance: models.Model,
    action: str,
    model: type[models.Model],
    pk_set: set | None,
    **kwargs: Any,
) -> None:
    """Group memberships and permissions: role changes are the writes most worth auditing."""
    if action not in {"post_add", "post_remove", "post_clear"} or not _audited(instance, None):
        return
    field = next(
        (f.name for f in instance._meta.many_to_many if f.remote_field.through is sender), sender.__name__
    )
    names = sorted(str(o) for o in model._default_manager.filter(pk__in=pk_set or []))
    verb = {"post_add": "added", "post_remove": "removed", "post_clear": "cleared"}[action]
    record("update", instance, changes={field: {verb: names}})


def _over_http(request: HttpRequest | None) -> bool:
    """Logins made without an HTTP request (test clients' force_login, a shell) are not audited."""
    return request is not None and bool(request.META.get("REMOTE_ADDR"))


@receiver(user_logged_in, dispatch_uid="moc-audit-login")
def _record_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if _over_http(request):
        request.user = user
        record("login", user, request=request)


@receiver(user_logged_out, dispatch_uid="moc-audit-logout")
def _record_logout(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if _over_http(request) and user is not None:
        request.user = user
        record("logout", user, request=request)
