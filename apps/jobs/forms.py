from __future__ import annotations

from typing import Any

from django import forms


class SelftestForm(forms.Form):
    """Where to run a self-test: the default queue, or a queue a live worker consumes."""

    queue = forms.ChoiceField()

    def __init__(self, *args: Any, queues: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = [(q, q) for q in queues]
