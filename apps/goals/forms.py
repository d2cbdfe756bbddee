from __future__ import annotations

from typing import Any

from django import forms

from apps.goals.domain.queue import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN
from apps.goals.domain.states import GOAL
from apps.goals.domain.targets import KIND_CHOICES, GoalKind, target_errors


class GoalCreateForm(forms.Form):
    title = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial=GoalKind.CUSTOM.value)
    priority = forms.IntegerField(
        min_value=PRIORITY_MIN,
        max_value=PRIORITY_MAX,
        initial=PRIORITY_DEFAULT,
        help_text="Higher goes first.",
    )
    due_at = forms.DateTimeField(
        required=False, label="Due", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    target = forms.JSONField(
        required=False,
        initial=dict,
        help_text='e.g. {"metric": "p95_latency_ms", "op": "<=", "value": 200}',
        widget=forms.TextInput(attrs={"size": 40}),
    )
    description = forms.CharField(required=False, widget=forms.TextInput(attrs={"size": 40}))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "kind" in data and "target" in data:
            data["target"] = data["target"] if data["target"] is not None else {}
            for error in target_errors(data["kind"], data["target"]):
                self.add_error("target", error)
        return data


class GoalTransitionForm(forms.Form):
    state = forms.ChoiceField(choices=GOAL.choices)
    reason = forms.CharField(required=False, max_length=2000)
