from __future__ import annotations

import datetime as dt

from django import forms

from apps.alerts.domain.matchers import parse_matchers

DURATIONS = [
    ("1", "1 hour"),
    ("2", "2 hours"),
    ("4", "4 hours"),
    ("12", "12 hours"),
    ("24", "1 day"),
    ("72", "3 days"),
    ("168", "1 week"),
]


class SilenceForm(forms.Form):
    matchers = forms.CharField(
        max_length=2000,
        help_text='e.g. alertname="GpuHot", node=~"gpu-0[12]"',
        widget=forms.TextInput(attrs={"size": 44}),
    )
    duration = forms.ChoiceField(choices=DURATIONS, initial="2", label="For")
    comment = forms.CharField(max_length=2000, widget=forms.TextInput(attrs={"size": 36}), help_text="Why?")

    def clean_matchers(self) -> list[dict[str, str]]:
        try:
            return parse_matchers(self.cleaned_data["matchers"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def lasts(self) -> dt.timedelta:
        return dt.timedelta(hours=int(self.cleaned_data["duration"]))
