from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import HttpRequest

from apps.alerts import services
from apps.alerts.domain.channels import SECRET, with_kept_secret, without_secret
from apps.alerts.models import (
    Alert,
    AlertRule,
    Delivery,
    InhibitRule,
    NotificationChannel,
    NotificationGroup,
    Silence,
)
from apps.core.domain.errors import Conflict


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows MOC writes itself (its notifier, its rules): shown, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "condition", "for_seconds", "severity", "enabled", "updated_at"]
    list_filter = ["kind", "event", "severity", "enabled", "op"]
    search_fields = ["name", "metric", "summary", "description"]
    list_editable = ["enabled"]
    filter_horizontal = ["channels"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "severity", "enabled"]}),
        ("Threshold rules", {"fields": ["metric", "op", "threshold", "matchers"]}),
        ("Event rules", {"fields": ["event"]}),
        ("Timing", {"fields": ["for_seconds", "keep_firing_seconds"]}),
        ("Annotations and notifications", {"fields": ["summary", "description", "channels"]}),
    ]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Shown, and deleted if need be, never edited here: MOC opens, fires, resolves and mutes alerts,
    and people acknowledge them on the pages or the API, which record who did and tell the live
    view. A "Save" would write back every column as this page read it, undoing what the evaluator
    or an operator changed meanwhile."""

    list_display = [
        "rule",
        "state",
        "fingerprint",
        "value",
        "started_at",
        "fired_at",
        "resolved_at",
        "silenced",
        "inhibited",
        "acknowledged_by",
    ]
    list_filter = ["state", "rule__severity", "silenced", "inhibited", "rule"]
    search_fields = ["fingerprint", "rule__name"]
    date_hierarchy = "started_at"
    list_select_related = ["rule", "acknowledged_by"]


def _silence_save(silence: Silence, *, changed: list[str], created_by: Any) -> Silence:
    """Write a silence edited in the admin through the services, as the API and the pages do: the
    same checks (an end in the future, an alert for expire-on-resolve, not expired yet) and the
    alerts' silenced flags refreshed at once, so no notification slips out meanwhile."""
    if silence.pk is None:
        return services.silence_create(
            created_by=created_by,
            matchers=silence.matchers,
            starts_at=silence.starts_at,
            ends_at=silence.ends_at,
            comment=silence.comment,
            alert=silence.alert,
            expire_on_resolve=silence.expire_on_resolve,
        )
    return services.silence_update(silence=silence, **{name: getattr(silence, name) for name in changed})


class SilenceAdminForm(forms.ModelForm):
    """Checks an edit with the services before the admin saves it: their refusals become the
    form's errors instead of a server error."""

    class Meta:
        model = Silence
        fields = ["matchers", "starts_at", "ends_at", "comment", "created_by", "alert", "expire_on_resolve"]

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        try:
            # A dry run: the services' own checks, then everything rolled back; the admin saves next.
            with transaction.atomic():
                _silence_save(self.instance, changed=self.changed_data, created_by=self.instance.created_by)
                transaction.set_rollback(True)
        except ValidationError as exc:
            self._update_errors(exc)
        except Conflict as exc:
            self.add_error(None, str(exc))


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    form = SilenceAdminForm
    list_display = ["id", "matchers_text", "starts_at", "ends_at", "status", "created_by", "comment"]
    list_filter = ["created_by", "expire_on_resolve"]
    search_fields = ["comment", "created_by__username"]
    date_hierarchy = "starts_at"
    list_select_related = ["created_by"]
    raw_id_fields = ["alert"]

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        # Expired, never deleted (as in the API and the pages): the record stays, and expiring
        # refreshes the alerts' silenced flags at once, which a delete here would not.
        return False

    def save_model(self, request: HttpRequest, obj: Silence, form: Any, change: bool) -> None:
        saved = _silence_save(obj, changed=form.changed_data, created_by=obj.created_by or request.user)
        obj.pk = saved.pk
        obj.refresh_from_db()


class NotificationChannelAdminForm(forms.ModelForm):
    """The config without its signing secret, which is write-only here as in the API: a config
    saved without "secret" keeps the one set (unless the kind changes), "secret": "" removes it."""

    class Meta:
        model = NotificationChannel
        fields = [
            "name",
            "kind",
            "config",
            "enabled",
            "send_resolved",
            "group_by",
            "group_wait_s",
            "group_interval_s",
            "repeat_interval_s",
        ]
        help_texts = {
            "config": 'Settings for the kind, e.g. {"url": "https://…"}. A webhook\'s signing "secret" is '
            'never shown: leave it out to keep it, give a new one to replace it, "secret": "" to remove it.'
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and isinstance(self.instance.config, dict):
            self.initial["config"] = without_secret(self.instance.config)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if isinstance(cleaned.get("config"), dict):
            saved = self.instance.config if self.instance.pk is not None else None
            cleaned["config"] = with_kept_secret(
                cleaned["config"], saved=saved, same_kind=cleaned.get("kind") == self.instance.kind
            )
        return cleaned


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelAdminForm
    list_display = ["name", "kind", "enabled", "send_resolved", "group_by", "updated_at"]
    list_filter = ["kind", "enabled", "send_resolved"]
    search_fields = ["name"]
    readonly_fields = ["signing"]

    @admin.display(description="Signing secret")
    def signing(self, channel: NotificationChannel) -> str:
        if channel.pk is not None and channel.config.get(SECRET):
            return "set: webhook bodies are signed (the secret is never shown)"
        return "none"


@admin.register(InhibitRule)
class InhibitRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "source_matchers", "target_matchers", "equal", "enabled", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["name"]
    list_editable = ["enabled"]


@admin.register(NotificationGroup)
class NotificationGroupAdmin(ReadOnlyAdmin):
    list_display = ["channel", "key", "labels", "first_seen_at", "last_sent_at"]
    list_filter = ["channel"]
    search_fields = ["key", "channel__name"]
    list_select_related = ["channel"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "channel",
        "status",
        "firing",
        "resolved",
        "test",
        "attempts",
        "response_status",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "test", "channel"]
    search_fields = ["channel__name", "group_key", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["channel"]
