"""The jobs page's forms: a self-test, and a fine-tune, evaluation, benchmark or conversion.

A job form only shapes what an operator typed into the kind's parameters (names from
domain.params, defaults from its dataclasses); the rules are the job services' (job_create), whose
refusals the view puts back on the field they name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from apps.jobs.datasets import selectors as dataset_selectors
from apps.jobs.domain import kinds
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.params import BenchmarkParams, ConvertParams, EvaluateParams, FineTuneParams, Method
from apps.models.models import ModelVersion


class SelftestForm(forms.Form):
    """Where to run a self-test: the default queue, or a queue a live worker consumes."""

    queue = forms.ChoiceField()

    def __init__(self, *args: Any, queues: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = [(q, q) for q in queues]


def _defaults(params_class: type) -> dict[str, Any]:
    """A parameters dataclass's defaults, as a form's initial values."""
    found: dict[str, Any] = {}
    for f in dataclasses.fields(params_class):
        if f.default is not dataclasses.MISSING:
            found[f.name] = f.default.value if isinstance(f.default, Method) else f.default
    return found


def _whole_numbers(value: str, *, field: str) -> list[int]:
    """ "1, 4, 8" -> [1, 4, 8]; a ValidationError naming what is not a positive whole number."""
    items = [item.strip() for item in value.replace(";", ",").split(",") if item.strip()]
    if not items:
        raise ValidationError(f"Give at least one {field}, e.g. 1, 4.")
    bad = [item for item in items if not (item.isascii() and item.isdigit() and int(item) > 0)]
    if bad:
        raise ValidationError(f"Positive whole numbers separated by commas; not {', '.join(bad)}.")
    return [int(item) for item in items]


def parse_golden(text: str) -> list[list[str]]:
    """Golden pairs, one "prompt => expected" per line (blank lines skipped); a ValidationError
    naming each line that has no "=>" or an empty side."""
    pairs: list[list[str]] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        prompt, arrow, expected = line.partition("=>")
        if not arrow or not prompt.strip() or not expected.strip():
            problems.append(f'line {number}: write it as "prompt => expected"')
            continue
        pairs.append([prompt.strip(), expected.strip()])
    if problems:
        raise ValidationError("; ".join(problems))
    return pairs


def _version_field(**options: Any) -> forms.ModelChoiceField:
    """A registered version to choose, by model name, newest first. (The queryset is lazy, and each
    form's copy of the field reads it afresh.)"""
    queryset = ModelVersion.objects.select_related("model").order_by("model__name", "-number")
    return forms.ModelChoiceField(queryset=queryset, **options)


def _dataset_field(**options: Any) -> forms.ModelChoiceField:
    """A dataset a job may use (valid, not archived): the parameters' rules refuse any other."""
    return forms.ModelChoiceField(queryset=dataset_selectors.dataset_usable(), **options)


class JobForm(forms.Form):
    """A job of `kind`: its parameters (every field but the job's own, JOB_FIELDS) go to job_create."""

    kind: ClassVar[JobKind]
    params_class: ClassVar[type]
    JOB_FIELDS: ClassVar[tuple[str, ...]] = ("priority", "wait_for_room")

    priority = forms.IntegerField(
        min_value=kinds.PRIORITY_MIN,
        max_value=kinds.PRIORITY_MAX,
        initial=kinds.PRIORITY_DEFAULT,
        help_text="0-100; higher runs first",
    )
    wait_for_room = forms.BooleanField(
        required=False, help_text="Wait in the queue when no device has room now, instead of being refused"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", self.kind.value)
        super().__init__(*args, **kwargs)
        for name, value in _defaults(self.params_class).items():
            if name in self.fields and self.fields[name].initial is None:
                self.fields[name].initial = value

    def params(self) -> dict[str, Any]:
        """The kind's parameters from the cleaned data (an object chosen becomes its id); a field left
        empty is left out, so the kind's default applies."""
        params: dict[str, Any] = {}
        for name, value in self.cleaned_data.items():
            if name in self.JOB_FIELDS or value is None or value == "" or value == []:
                continue
            params[name] = value.pk if hasattr(value, "pk") else value
        return params

    def job_options(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.JOB_FIELDS if name in self.cleaned_data}

    def add_refusal(self, exc: ValidationError) -> None:
        """Put job_create's refusal on the fields it names: {"field": [...]} or {"params": ["field:
        why", ...]}; what names no field of the form stays with the form as a whole."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc.messages)
            return
        for key, errors in exc.message_dict.items():
            for text in errors:
                name, sep, why = text.partition(":")
                if key == "params" and sep and name.strip() in self.fields:
                    self.add_error(name.strip(), why.strip())
                elif key in self.fields:
                    self.add_error(key, text)
                else:
                    self.add_error(None, f"{key}: {text}" if key not in ("__all__", "params") else text)


class FineTuneForm(JobForm):
    kind = JobKind.FINE_TUNE
    params_class = FineTuneParams

    base_version = _version_field(label="Base version")
    dataset = _dataset_field()
    method = forms.ChoiceField(choices=[(m.value, m.value) for m in Method])
    learning_rate = forms.FloatField(min_value=0)
    max_steps = forms.IntegerField(min_value=0, label="Steps", help_text="0: as many as the epochs take")
    epochs = forms.FloatField(min_value=0, help_text="Used when steps is 0")
    batch_size = forms.IntegerField(min_value=1)
    grad_accum = forms.IntegerField(min_value=1, label="Gradient accumulation")
    seq_len = forms.IntegerField(min_value=1, label="Sequence length")
    eval_interval = forms.IntegerField(min_value=0, help_text="Steps between evaluations; 0: at the end")
    checkpoint_interval = forms.IntegerField(min_value=0, help_text="Steps between checkpoints")
    lora_rank = forms.IntegerField(min_value=1, label="LoRA rank", help_text="LoRA only")
    seed = forms.IntegerField(min_value=0)

    def params(self) -> dict[str, Any]:
        params = super().params()
        if params.get("method") != Method.LORA:
            params.pop("lora_rank", None)
        return params


class EvaluateForm(JobForm):
    kind = JobKind.EVALUATE
    params_class = EvaluateParams

    version = _version_field()
    dataset = _dataset_field(required=False, help_text="Loss and perplexity on its eval split")
    golden = forms.CharField(
        required=False,
        initial="",
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Golden pairs",
        help_text='One "prompt => expected" per line, scored by exact match',
    )

    def clean_golden(self) -> list[list[str]]:
        return parse_golden(self.cleaned_data.get("golden") or "")


class BenchmarkForm(JobForm):
    kind = JobKind.BENCHMARK
    params_class = BenchmarkParams

    version = _version_field()
    batch_sizes = forms.CharField(help_text="Comma-separated, e.g. 1, 4")
    prompt_lengths = forms.CharField(help_text="Tokens, comma-separated, e.g. 16, 128")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("batch_sizes", "prompt_lengths"):
            self.fields[name].initial = ", ".join(str(n) for n in self.fields[name].initial or ())

    def clean_batch_sizes(self) -> list[int]:
        return _whole_numbers(self.cleaned_data["batch_sizes"], field="batch size")

    def clean_prompt_lengths(self) -> list[int]:
        return _whole_numbers(self.cleaned_data["prompt_lengths"], field="prompt length")


class ConvertForm(JobForm):
    """Admins only: a pickle checkpoint converted to safetensors in a separate process."""

    kind = JobKind.CONVERT
    params_class = ConvertParams
    JOB_FIELDS = ("priority",)

    version = _version_field()
    output_name = forms.CharField(
        required=False, max_length=100, help_text="The model the output joins; empty: the source's"
    )
    wait_for_room = None  # type: ignore[assignment]  # a conversion runs on a CPU worker


JOB_FORMS: dict[str, type[JobForm]] = {
    form.kind.value: form for form in (FineTuneForm, EvaluateForm, BenchmarkForm, ConvertForm)
}
