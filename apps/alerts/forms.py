"""The alerting pages' forms: acknowledge, silence, and the rule editor."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone

from apps.alerts.domain.catalog import CATALOG, GROUPS
from apps.alerts.domain.matchers import format_matchers, parse_matchers
from apps.alerts.domain.rules import Op, RuleKind
from apps.alerts.models import AlertRule, NotificationChannel

DURATIONS = [
    ("1", "1 hour"),
    ("2", "2 hours"),
    ("4", "4 hours"),
    ("12", "12 hours"),
    ("24", "1 day"),
    ("72", "3 days"),
    ("168", "1 week"),
]
# An acknowledgement mutes repeats for this long, or (the default) until the alert resolves.
ACK_UNTIL_RESOLVED = ""
ACK_EXPIRIES = [(ACK_UNTIL_RESOLVED, "until it resolves"), ("1", "1 hour"), ("4", "4 hours"), ("24", "1 day")]


def _matchers_field(**kwargs: Any) -> forms.CharField:
    return forms.CharField(
        max_length=2000,
        help_text='e.g. alertname="GpuHot", node=~"gpu-0[12]"',
        widget=forms.TextInput(attrs={"size": 44}),
        **kwargs,
    )


def _read_matchers(text: str) -> list[dict[str, str]]:
    try:
        return parse_matchers(text)
    except ValueError as exc:
        raise forms.ValidationError(str(exc)) from exc


class AcknowledgeForm(forms.Form):
    comment = forms.CharField(
        max_length=2000, required=False, widget=forms.TextInput(attrs={"size": 28}), help_text="What you do"
    )
    expires = forms.ChoiceField(choices=ACK_EXPIRIES, required=False, label="Mute repeats")

    def expires_at(self) -> dt.datetime | None:
        hours = self.cleaned_data["expires"]
        return None if hours == ACK_UNTIL_RESOLVED else timezone.now() + dt.timedelta(hours=int(hours))


class SilenceForm(forms.Form):
    """A silence ending after a duration or at a time; made from an alert (`alert`), it can end
    when that alert resolves."""

    matchers = _matchers_field()
    duration = forms.ChoiceField(choices=DURATIONS, initial="2", label="For", required=False)
    ends_at = forms.DateTimeField(
        required=False,
        label="or until",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    comment = forms.CharField(max_length=2000, widget=forms.TextInput(attrs={"size": 36}), help_text="Why?")
    expire_on_resolve = forms.BooleanField(
        required=False, label="End when the alert resolves", help_text="Only for a silence made from an alert"
    )
    alert = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def clean_matchers(self) -> list[dict[str, str]]:
        return _read_matchers(self.cleaned_data["matchers"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("ends_at") and not data.get("duration") and "ends_at" not in self.errors:
            self.add_error("duration", "Say how long, or until when.")
        return data

    def ends(self) -> dt.datetime:
        if ends_at := self.cleaned_data.get("ends_at"):
            return ends_at
        return timezone.now() + dt.timedelta(hours=int(self.cleaned_data["duration"]))


def metric_choices() -> list[tuple[str, Any]]:
    """The catalogue's metrics grouped as on the pages (an empty first choice for event rules)."""
    grouped: list[tuple[str, Any]] = [("", "—")]
    for group in GROUPS:
        specs = sorted((s for s in CATALOG.values() if s.group == group), key=lambda s: s.name)
        if specs:
            grouped.append((group, [(s.name, f"{s.name} ({s.unit})" if s.unit else s.name) for s in specs]))
    return grouped


class MatchersTextField(forms.CharField):
    """Matchers typed in Alertmanager's text form, kept as the model's list of dicts."""

    def prepare_value(self, value: Any) -> Any:
        return format_matchers(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[dict[str, str]]:
        text = super().to_python(value)
        return _read_matchers(text) if text.strip() else []


# What each kind of rule leaves blank: the fields of the other kind, as a new rule has them.
EVENT_BLANKS: dict[str, Any] = {"metric": "", "op": Op.GT.value, "threshold": None, "for_seconds": 0}
THRESHOLD_BLANKS: dict[str, Any] = {"event": ""}


class AlertRuleForm(forms.ModelForm):
    """The rule editor: the model checks the rule (AlertRule.clean: the metric, event, threshold and
    matchers against the catalogue, the annotation templates over a sample alert); this form blanks
    the other kind's fields (the editor hides them, so a value left there from before the kind
    changed could only be refused on a field nobody sees)."""

    metric = forms.ChoiceField(choices=metric_choices, required=False, help_text="Threshold rules")
    matchers = MatchersTextField(
        required=False,
        help_text='Which series the rule watches, e.g. node="gpu-01", device=~"0|1"; empty watches all.',
        widget=forms.TextInput(attrs={"size": 60}),
    )
    channels = forms.ModelMultipleChoiceField(
        queryset=NotificationChannel.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = AlertRule
        fields = [
            "name",
            "kind",
            "metric",
            "event",
            "matchers",
            "op",
            "threshold",
            "for_seconds",
            "keep_firing_seconds",
            "severity",
            "summary",
            "description",
            "channels",
            "enabled",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 3, "cols": 60})}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        blanks = EVENT_BLANKS if data.get("kind") == RuleKind.EVENT.value else THRESHOLD_BLANKS
        for name, blank in blanks.items():
            data[name] = blank
            self.errors.pop(name, None)  # a hidden field's own complaint (e.g. "not a number") goes too
        return data
