from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core.domain.roles import Role


def validate_expiry_date(value: dt.datetime | None) -> None:
    """A new key's expiry, in the page and the API: a key that never works helps nobody."""
    if value is not None and value <= timezone.now():
        raise ValidationError("The expiry date has passed: choose a time in the future, or none.")


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=50, help_text="What uses this key, e.g. “ci-pipeline”.")
    role = forms.ChoiceField(help_text="A key can have at most your own role.")
    expiry_date = forms.DateTimeField(
        required=False,
        help_text="Optional; the key stops working after this (UTC).",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        validators=[validate_expiry_date],
    )

    def __init__(self, *args: Any, max_role: Role | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = [r for r in Role if max_role is not None and max_role.covers(r)]
        self.fields["role"].choices = [(r.value, r.value.capitalize()) for r in allowed]
