"""The datasets' pages: the list (with upload and scan for operators) and one dataset (its preview
marking train and eval rows, its bad rows with their numbers, a Validate button)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.domain.text import counted
from apps.core.pages import FilteredListView, message_refusal
from apps.jobs.datasets import preview, selectors, services, upload
from apps.jobs.datasets.filters import DatasetFilter
from apps.jobs.domain.datasets import EVAL_SHARE_DEFAULT, NAME_MAX, Split
from apps.jobs.domain.states import DatasetState

SECTION = "datasets"
PREVIEW_ROWS = 20


class DatasetUploadForm(forms.Form):
    file = forms.FileField(help_text="A .jsonl or .txt file")
    name = forms.CharField(max_length=NAME_MAX, required=False, help_text="Default: the file's name")
    description = forms.CharField(required=False)
    eval_share = forms.FloatField(min_value=0.0, max_value=0.9, initial=EVAL_SHARE_DEFAULT)
    split_seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)


class DatasetListView(FilteredListView):
    queryset = selectors.dataset_list()
    filterset_class = DatasetFilter
    template_name = "jobs/dataset_list.html"
    section = SECTION

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        user = self.request.user
        context.update(
            upload_form=DatasetUploadForm() if user.has_perm("jobs.add_dataset") else None,
            can_scan=user.has_perm("jobs.change_dataset"),
            roots=settings.MOC_DATASET_ROOTS,
            upload_max=settings.MOC_DATASET_UPLOAD_MAX_BYTES,
        )
        return context


def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(selectors.dataset_list(), pk=pk)
    split = request.GET.get("split", Split.ALL.value)
    if split not in {s.value for s in Split}:
        split = Split.ALL.value
    shown = preview.preview(dataset, rows=PREVIEW_ROWS, split=split)
    if shown.note:
        messages.info(request, f"Preview: {shown.note}")
    context = {
        "section": SECTION,
        "dataset": dataset,
        "split": split,
        "splits": [s.value for s in Split],
        "preview": shown.rows,
        "preview_rows": PREVIEW_ROWS,
        "can_validate": request.user.has_perm("jobs.change_dataset"),
    }
    return render(request, "jobs/dataset_detail.html", context)


@require_POST
@permission_required("jobs.add_dataset", raise_exception=True)
def dataset_upload(request: HttpRequest) -> HttpResponse:
    form = DatasetUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, " ".join(f"{f}: {' '.join(e)}" for f, e in form.errors.items()))
        return redirect("jobs:datasets")
    try:
        dataset = upload.dataset_upload(created_by=request.user, **form.cleaned_data)
    except ValidationError as exc:
        message_refusal(request, exc)
        return redirect("jobs:datasets")
    messages.success(request, f"{dataset.name} is uploaded: {_verdict(dataset)}")
    return redirect(dataset)


@require_POST
@permission_required("jobs.change_dataset", raise_exception=True)
def datasets_scan(request: HttpRequest) -> HttpResponse:
    result = services.datasets_scan_request()
    text = (
        f"Scanned the dataset roots: {result.new} new, {result.changed} changed, "
        f"{result.unchanged} unchanged, {result.missing} gone."
    )
    if result.refused:
        text += f" {counted(len(result.refused), 'path')} refused: " + "; ".join(
            f"{r.path} ({r.reason})" for r in result.refused[:5]
        )
    messages.success(request, text)
    return redirect("jobs:datasets")


@require_POST
@permission_required("jobs.change_dataset", raise_exception=True)
def dataset_validate(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = services.dataset_validate_request(dataset=get_object_or_404(selectors.dataset_list(), pk=pk))
    messages.success(request, f"{dataset.name}: {_verdict(dataset)}")
    return redirect(dataset)


def _verdict(dataset: Any) -> str:
    if dataset.state == DatasetState.PENDING:
        return "a worker is validating it; this page shows its verdict once done."
    if dataset.state == DatasetState.VALID:
        return f"valid, {counted(dataset.rows, 'row')}."
    return f"invalid, {counted(dataset.error_count, 'bad row')} (listed below)."
