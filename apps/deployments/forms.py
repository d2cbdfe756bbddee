"""The deployment page's forms: a new release, and the deployment's settings. Each feeds one
service call; the service's refusals come back as the form's errors or the page's message."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.deployments.domain.checks import CHECK_NAME_CHOICES
from apps.deployments.domain.strategy import STRATEGY_CHOICES
from apps.deployments.models import SETTINGS_FIELDS, Deployment
from apps.models.domain.states import ValidationState
from apps.models.models import ModelVersion

_STEP_SEPARATORS = re.compile(r"[\s,]+")


def parse_steps(text: str) -> list[int]:
    """Steps typed as "10, 50, 100": whole numbers between commas or spaces."""
    try:
        return [int(part) for part in _STEP_SEPARATORS.split(text.strip()) if part]
    except ValueError:
        raise ValidationError("Whole percentages separated by commas, e.g. 10, 50, 100.") from None


class ReleaseForm(forms.Form):
    """A release of a version of the deployment's model. The gate override is offered to admins only."""

    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), label="Version")
    strategy = forms.ChoiceField(choices=STRATEGY_CHOICES)
    steps = forms.CharField(
        required=False, help_text="Canary only: percent steps ending at 100 (empty: the deployment's)"
    )
    override_gate = forms.BooleanField(
        required=False,
        label="Override the staging gate",
        help_text="Release to production without a passed staging verification (audited)",
    )

    def __init__(self, *args: Any, deployment: Deployment, may_override: bool, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"strategy": deployment.strategy})
        super().__init__(*args, **kwargs)
        versions = ModelVersion.objects.select_related("model").filter(
            archived=False, validation_state=ValidationState.VALID
        )
        if deployment.registered_model_id is not None:
            versions = versions.filter(model_id=deployment.registered_model_id)
        self.fields["model_version"].queryset = versions.order_by("model__name", "-number")
        if not may_override:
            del self.fields["override_gate"]

    def clean_steps(self) -> list[int] | None:
        text = self.cleaned_data["steps"]
        return parse_steps(text) if text.strip() else None


class DeploymentSettingsForm(forms.ModelForm):
    """What an operator edits on the deployment's settings page; saved by services.deployment_update."""

    required_checks = forms.MultipleChoiceField(
        choices=CHECK_NAME_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="A failed required check stops a release; the others only warn",
    )
    canary_steps = forms.CharField(help_text="Canary traffic steps in percent, rising, ending at 100")
    golden_set = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text='[{"prompt": "2+2=", "expected": "4", "match": "exact|contains|similarity", '
        '"tolerance": 0.8}]',
    )

    class Meta:
        model = Deployment
        fields = ["description", "environment", *SETTINGS_FIELDS]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["canary_steps"] = ", ".join(str(s) for s in self.instance.canary_steps)

    def clean_canary_steps(self) -> list[int]:
        return parse_steps(self.cleaned_data["canary_steps"])

    def clean_golden_set(self) -> list[dict[str, Any]]:
        return self.cleaned_data["golden_set"] or []

    def changes(self) -> dict[str, Any]:
        """The fields the operator changed, as the service takes them."""
        return {name: self.cleaned_data[name] for name in self.changed_data}
