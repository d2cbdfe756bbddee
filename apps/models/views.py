"""The registry's pages: models, one model, one version, scans; their buttons call services."""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django.views.generic import DetailView

from apps.core.domain.errors import Conflict
from apps.core.pages import FilteredListView, message_refusal
from apps.models import scanning, selectors, services
from apps.models.domain import measured, naming
from apps.models.domain.states import SCAN_ACTIVE, ValidationState
from apps.models.filters import RegisteredModelFilter, ScanRunFilter
from apps.models.models import ModelVersion, RegisteredModel

# A scan page re-reads its live part this often while the scan is queued or running, and a
# version page its validation report while a check it asked for is on its way.
POLL_S = 2
# A version page waits this long for the report it asked for, then says so and stops asking.
VALIDATION_WAIT_S = 300
# Suggested alias names; any valid name is accepted.
ALIAS_SUGGESTIONS = ("production", "staging", "canary", "latest")

# The version page lists these first, each from the first metadata key present: Hugging Face
# configs, GGUF headers and ONNX graphs name the same facts differently.
FACTS = (
    ("Architecture", ("architecture", "architectures", "model_type")),
    ("Context length", ("context_length", "max_position_embeddings", "n_positions")),
    ("Layers", ("num_hidden_layers", "block_count", "n_layer", "num_layers")),
    ("Hidden size", ("hidden_size", "embedding_length", "n_embd")),
    ("Attention heads", ("num_attention_heads", "head_count", "n_head")),
    ("KV heads", ("num_key_value_heads", "head_count_kv")),
    ("Vocabulary", ("vocab_size",)),
    ("Dtypes", ("dtypes", "torch_dtype", "tensor_types")),
    ("Quantisation", ("quantisation", "quantization", "file_type")),
    ("Opset", ("opset", "opsets")),
    ("Producer", ("producer",)),
    ("Inputs", ("inputs",)),
    ("Outputs", ("outputs",)),
    ("Adapter", ("adapter",)),
)


def _show(value: Any) -> str:
    """A metadata value in one line: lists joined, ONNX tensors as name: dtype[shape]."""
    if isinstance(value, dict):
        if "name" in value and "dtype" in value:
            dims = value.get("shape")
            shape = "" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
            return f"{value['name']}: {value['dtype'] or '?'}{shape}"
        # ONNX names its default opset domain "".
        return ", ".join(f"{k} {_show(v)}" if k else _show(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_show(v) for v in value)
    return str(value)


def _facts(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    facts = []
    for label, keys in FACTS:
        key = next((k for k in keys if metadata.get(k) not in (None, "", [], {})), None)
        if key is not None:
            facts.append((label, _show(metadata[key])))
    return facts


def _problems(version: ModelVersion) -> list[str]:
    """Why an invalid version is refused: the recorded verdict, else the report's fail lines."""
    if version.validation_state != ValidationState.INVALID:
        return []
    lines = [line for line in version.validation_error.splitlines() if line.strip()]
    return lines or [
        f"{row.get('check')}: {row.get('detail')}"
        for row in version.validation_report
        if row.get("status") == "fail"
    ]


class AliasForm(forms.Form):
    """Point an alias of one model at one of its versions (moving it if it exists)."""

    name = forms.CharField(
        max_length=naming.ALIAS_MAX,
        widget=forms.TextInput(attrs={"list": "alias-names", "placeholder": "production"}),
    )
    version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), empty_label=None)

    def __init__(self, *args: Any, model: RegisteredModel, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["version"]
        field.queryset = model.versions.filter(archived=False).order_by("-number")
        field.label_from_instance = lambda v: f"v{v.number} ({v.get_validation_state_display().lower()})"


class VersionMoveForm(forms.Form):
    """Make a version the next version of another registered model (services.version_move)."""

    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.all(), empty_label=None)

    def __init__(self, *args: Any, version: ModelVersion, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            # The models offered, read once. A posted one may be any model: one archived since
            # the page was drawn is refused by the service, which says why.
            others = RegisteredModel.objects.filter(archived=False).exclude(pk=version.model_id)
            self.fields["model"].choices = list(others.order_by("name").values_list("pk", "name"))


class ModelListView(FilteredListView):
    queryset = selectors.model_rows()
    filterset_class = RegisteredModelFilter
    template_name = "models/model_list.html"
    section = "models"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            can_scan=self.request.user.has_perm("registry.add_scanrun"),
            last_scan=selectors.scan_list().first(),
            roots=settings.MOC_MODEL_ROOTS,
        )
        return context


class ModelDetailView(DetailView):
    queryset = selectors.model_page()
    template_name = "models/model_detail.html"
    context_object_name = "model"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        model: RegisteredModel = self.object
        user = self.request.user
        can_alias = user.has_perm("registry.change_modelalias")
        versions = list(selectors.model_version_list().filter(model=model).order_by("-number"))
        return super().get_context_data(
            section="models",
            versions=versions,
            **_measured(versions),
            lineage=selectors.model_lineage(model=model),
            can_archive=user.has_perm("registry.change_registeredmodel"),
            can_alias=can_alias,
            alias_form=AliasForm(model=model) if can_alias and not model.archived else None,
            alias_suggestions=ALIAS_SUGGESTIONS,
            **kwargs,
        )


def _measured(versions: list[ModelVersion]) -> dict[str, Any]:
    """The model page's evaluations (a table, and charts comparing the versions oldest first) and
    each version's benchmark baseline, from what the jobs recorded on them."""
    evaluated = [v for v in versions if v.evaluations]
    return {
        "evaluations": [(v, measured.evaluation_rows(v.evaluations)) for v in evaluated],
        "evaluation_charts": measured.evaluation_charts([(v.number, v.evaluations) for v in evaluated[::-1]]),
        "baselines": [(v, row) for v in versions if (row := measured.baseline_row(v.benchmark))],
    }


def _lineage(version: ModelVersion) -> dict[str, Any] | None:
    """What the version's lineage JSON says, with links: the version it was made from, the
    dataset and the job (by URL name: the registry imports nothing of the jobs app)."""
    lineage = version.lineage
    if not lineage:
        return None
    base_id = lineage.get("base_version") or lineage.get("converted_from")
    base = None
    if isinstance(base_id, int) and not isinstance(base_id, bool):
        base = ModelVersion.objects.select_related("model").filter(pk=base_id).first()
    dataset = lineage.get("dataset")
    dataset_id = dataset.get("id") if isinstance(dataset, dict) else None
    job = lineage.get("job")
    job_id = job.get("id") if isinstance(job, dict) else job
    metrics = lineage.get("metrics")
    return {
        "made_by": str(lineage.get("made_by") or ""),
        "base": base,
        "base_id": base_id,
        "dataset": dataset.get("name") if isinstance(dataset, dict) else dataset,
        "dataset_url": _url("jobs:dataset", dataset_id),
        "dataset_sha256": dataset.get("sha256") if isinstance(dataset, dict) else None,
        "job": job_id,
        "job_url": (job.get("url") if isinstance(job, dict) else None) or _url("jobs:detail", job_id),
        "adapter": lineage.get("adapter"),
        "metrics": {k: v for k, v in metrics.items() if v is not None} if isinstance(metrics, dict) else {},
        "source_sha256": lineage.get("source_sha256"),
        "at": measured.moment(lineage.get("at")),
    }


def _url(name: str, pk: Any) -> str:
    """The page of another app's object by URL name, or "" where there is none."""
    if not isinstance(pk, int) or isinstance(pk, bool):
        return ""
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return ""


def _validation_part(request: HttpRequest, version: ModelVersion, *, asked_at: float) -> HttpResponse:
    """The version page's validation report (and, out of band, its verdict), re-read by the page
    until a check that ended after `asked_at` (epoch seconds) has written its report."""
    now = timezone.now().timestamp()
    arrived = version.validated_at is not None and version.validated_at.timestamp() >= asked_at
    waiting = not arrived and now - asked_at < VALIDATION_WAIT_S
    context = {
        "version": version,
        "problems": _problems(version),
        "awaiting": waiting,
        "gave_up": not arrived and not waiting,
        "after": f"{asked_at:.3f}",
        "poll_s": POLL_S,
    }
    return render(request, "models/version_detail.html#validation", context)


class VersionDetailView(DetailView):
    queryset = selectors.model_version_list()
    template_name = "models/version_detail.html"
    context_object_name = "version"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # The page's own poll for a report it asked for (?after=, from version_validate).
        asked_at = _epoch(request.GET.get("after", ""))
        if request.htmx and asked_at is not None:
            return _validation_part(request, self.get_object(), asked_at=asked_at)
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        version: ModelVersion = self.object
        can_change = self.request.user.has_perm("registry.change_modelversion")
        return super().get_context_data(
            section="models",
            files=version.files.order_by("path"),
            aliases=version.aliases.order_by("name"),
            children=version.children.select_related("model").order_by("model__name", "number"),
            lineage=_lineage(version),
            **_measured([version]),
            facts=_facts(version.metadata),
            problems=_problems(version),
            can_validate=can_change,
            move_form=_move_form(version) if can_change else None,
            **kwargs,
        )


def _move_form(version: ModelVersion) -> VersionMoveForm | None:
    """The form that makes `version` a version of another model, where it could: only a model's
    sole version moves (services.version_move), and only where another model may take it."""
    if version.model.versions.exclude(pk=version.pk).exists():
        return None
    form = VersionMoveForm(version=version)
    return form if form.fields["model"].choices else None


class ScanListView(FilteredListView):
    queryset = selectors.scan_list()
    filterset_class = ScanRunFilter
    template_name = "models/scan_list.html"
    section = "models"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            can_scan=self.request.user.has_perm("registry.add_scanrun"), roots=settings.MOC_MODEL_ROOTS
        )
        return context


def scan_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scan = get_object_or_404(selectors.scan_list(), pk=pk)
    context = {"section": "models", "scan": scan, "active": scan.state in SCAN_ACTIVE, "poll_s": POLL_S}
    template = "models/scan_detail.html#live" if request.htmx else "models/scan_detail.html"
    return render(request, template, context)


@require_POST
@permission_required("registry.add_scanrun", raise_exception=True)
def scan_now(request: HttpRequest) -> HttpResponse:
    try:
        scan = scanning.scan_request(user=request.user)
    except Conflict as exc:
        message_refusal(request, exc)
        return redirect(selectors.scan_active() or "models:scans")
    messages.success(request, f"Scan #{scan.pk} queued: this page follows it.")
    return redirect(scan)


@require_POST
@permission_required("registry.change_registeredmodel", raise_exception=True)
def model_archive(request: HttpRequest, pk: int) -> HttpResponse:
    model = services.model_archive(model=get_object_or_404(RegisteredModel, pk=pk))
    messages.success(
        request, f"{model.name} is archived: it is hidden from everyday lists, nothing is deleted."
    )
    return redirect(model)


@require_POST
@permission_required("registry.change_registeredmodel", raise_exception=True)
def model_restore(request: HttpRequest, pk: int) -> HttpResponse:
    model = services.model_restore(model=get_object_or_404(RegisteredModel, pk=pk))
    messages.success(request, f"{model.name} is restored.")
    return redirect(model)


@require_POST
@permission_required("registry.change_modelalias", raise_exception=True)
def alias_set(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, pk=pk)
    form = AliasForm(request.POST, model=model)
    if not form.is_valid():
        messages.error(request, " ".join(f"{f}: {' '.join(e)}" for f, e in form.errors.items()))
        return redirect(model)
    name, version = form.cleaned_data["name"].strip(), form.cleaned_data["version"]
    try:
        services.alias_set(model=model, name=name, version=version)
    except ValidationError as exc:
        message_refusal(request, exc)
    else:
        messages.success(request, f"{model.name}@{name} now points at v{version.number}.")
    return redirect(model)


@require_POST
@permission_required("registry.delete_modelalias", raise_exception=True)
def alias_clear(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    model = get_object_or_404(RegisteredModel, pk=pk)
    if services.alias_clear(model=model, name=name):
        messages.success(request, f"{model.name}@{name} is cleared.")
    else:
        messages.info(request, f"{model.name} has no alias {name}: nothing to clear.")
    return redirect(model)


def _epoch(value: str) -> float | None:
    try:
        moment = float(value)
    except ValueError:
        return None
    return moment if math.isfinite(moment) else None


@require_POST
@permission_required("registry.change_modelversion", raise_exception=True)
def version_validate(request: HttpRequest, pk: int) -> HttpResponse:
    asked_at = timezone.now().timestamp()
    version = scanning.validation_request(
        version=get_object_or_404(ModelVersion.objects.select_related("model"), pk=pk)
    )
    if request.htmx:  # the page waits for the new report in place
        return _validation_part(request, version, asked_at=asked_at)
    messages.success(request, f"{version} is queued for validation: its report below changes once checked.")
    return redirect(version)


@require_POST
@permission_required("registry.change_modelversion", raise_exception=True)
def version_archive(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("model"), pk=pk)
    try:
        services.version_archive(version=version)
    except ValidationError as exc:
        message_refusal(request, exc)
    else:
        messages.success(request, f"{version} is archived: hidden from everyday lists, nothing is deleted.")
    return redirect(version)


@require_POST
@permission_required("registry.change_modelversion", raise_exception=True)
def version_restore(request: HttpRequest, pk: int) -> HttpResponse:
    version = services.version_restore(
        version=get_object_or_404(ModelVersion.objects.select_related("model"), pk=pk)
    )
    messages.success(request, f"{version} is restored.")
    return redirect(version)


@require_POST
@permission_required("registry.change_modelversion", raise_exception=True)
def version_move(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("model"), pk=pk)
    form = VersionMoveForm(request.POST, version=version)
    if not form.is_valid():
        messages.error(request, " ".join(f"{f}: {' '.join(e)}" for f, e in form.errors.items()))
        return redirect(version)
    was = str(version)
    try:
        version = services.version_move(version=version, model=form.cleaned_data["model"])
    except ValidationError as exc:
        message_refusal(request, exc)
    else:
        messages.success(request, f"{was} is now {version}; the model it was the only version of is deleted.")
    return redirect(version)
