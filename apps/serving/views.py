"""Serving's pages and the sections it shows on other apps' pages: the placements list, what each
device holds (on the GPUs, node and device pages) and where a version is loaded (on its page), live;
their buttons load, unload and pin model versions and try a loaded one, each through one service call.
The sections are registered in ServingConfig.ready (apps.core.sections)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.core.domain.errors import Conflict
from apps.core.pages import FilteredListView, back_url, ids_param, message_refusal
from apps.fleet.models import Device, Node
from apps.models.models import ModelVersion
from apps.serving import inference, placing, selectors
from apps.serving.api.serializers import TASK_INPUTS
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from apps.serving.domain.tasks import EMBED, TENSORS, tasks_for
from apps.serving.filters import PlacementFilter
from apps.serving.models import Placement

# The live lists are polled this often (seconds).
POLL_S = 3
# Try it shows this many leading values of an embedding, and of each output tensor.
EMBED_SHOWN = 8
TENSOR_SHOWN = 16


def _page(request: HttpRequest, fallback: str) -> str:
    """The address of the page a section was loaded into (htmx says it), for its buttons' return."""
    return (request.htmx.current_url_abs_path if request.htmx else None) or fallback


def _poll(device_ids: list[int]) -> dict[str, Any]:
    """What serving/_placements_poller.html needs to keep these devices' lists live."""
    return {"query": urlencode({"device": device_ids}, doseq=True), "poll_s": POLL_S}


def _device_blocks(request: HttpRequest, devices: list[Device], *, back: str, tag: str) -> dict[str, Any]:
    """Each device with its live placement list; the Load forms' choices for those who may load."""
    live = selectors.device_placements_live(device_ids=[d.pk for d in devices], now=timezone.now())
    for device in devices:
        device.live_placements = live[device.pk]
    may_load = request.user.has_perm("serving.add_placement")
    return {
        "devices": devices,
        "back": back,
        "tag": tag,
        "load_choices": selectors.version_load_choices() if may_load and devices else None,
    }


@require_GET
def devices_section(request: HttpRequest) -> HttpResponse:
    """What devices hold (`?device=1&device=2`), for one node on the GPUs page: one block per
    device with its list and Load form (the page's one poll keeps the lists live)."""
    devices = list(Device.objects.select_related("node").filter(pk__in=ids_param(request, "device")))
    context = _device_blocks(request, devices, back=_page(request, reverse("fleet:devices")), tag="h3")
    return render(request, "serving/_devices_section.html", context)


@require_GET
def devices_poller(request: HttpRequest) -> HttpResponse:
    """The GPUs page's one poll of every live list it shows (`?device=1&device=2`): each node's
    section draws its devices' lists, this keeps them all live in one request every POLL_S."""
    return render(request, "serving/_placements_poller.html", _poll(ids_param(request, "device")))


@require_GET
def device_section(request: HttpRequest, pk: int) -> HttpResponse:
    """A device page's serving: what it holds now (live, with Load) and the placements that ended
    there lately, with a link to all of them."""
    device = get_object_or_404(Device.objects.select_related("node"), pk=pk)
    context = _device_blocks(request, [device], back=_page(request, device.get_absolute_url()), tag="h2")
    ended, ended_count = selectors.device_placements_ended(device_id=device.pk)
    context.update(
        _poll([device.pk]),
        ended=ended,
        ended_count=ended_count,
        all_url=f"{reverse('serving:placements')}?{urlencode({'device': device.pk})}",
    )
    return render(request, "serving/_device_section.html", context)


@require_GET
def node_section(request: HttpRequest, pk: int) -> HttpResponse:
    """A node page's serving: what is loaded or loading on its devices."""
    node = get_object_or_404(Node, pk=pk)
    placements = selectors.placement_list().filter(device__node=node, state__in=PLACEMENT_ACTIVE)
    return render(request, "serving/_node_section.html", {"placements": placements})


@require_GET
def version_section(request: HttpRequest, pk: int) -> HttpResponse:
    """A version page's Serving section: where it is loaded (live), Load and Try it."""
    version = get_object_or_404(ModelVersion.objects.select_related("model"), pk=pk)
    serving = selectors.version_serving(version=version, now=timezone.now())
    back = _page(request, version.get_absolute_url())
    return render(
        request,
        "serving/_version_serving.html",
        {"version": version, "serving": serving, "back": back, "poll_s": POLL_S},
    )


class PlacementListView(FilteredListView):
    queryset = selectors.placement_list()
    filterset_class = PlacementFilter
    template_name = "serving/placement_list.html"
    section = "serving"


@require_GET
def placements_live(request: HttpRequest) -> HttpResponse:
    """The live placement lists a page polls, each swapped into the page by its id (htmx
    out-of-band): `?device=1&device=2` for devices' lists, `?version=7` for a version's."""
    now = timezone.now()
    fallback = reverse("fleet:devices")
    blocks: list[dict[str, Any]] = []
    version_id = request.GET.get("version", "")
    if version_id.isdigit():
        version = get_object_or_404(ModelVersion.objects.select_related("model"), pk=int(version_id))
        serving = selectors.version_serving(version=version, now=now)
        blocks.append(
            {
                "scope": "version",
                "owner": version.pk,
                "placements": serving.placements,
                "figures": serving.figures,
            }
        )
        fallback = version.get_absolute_url()
    live = selectors.device_placements_live(device_ids=ids_param(request, "device"), now=now)
    blocks += [{"scope": "device", "owner": pk, "placements": rows} for pk, rows in live.items()]
    return render(
        request, "serving/_placements_live.html", {"blocks": blocks, "back": _page(request, fallback)}
    )


def _back(request: HttpRequest, fallback: str) -> HttpResponse:
    """Back to the page the button was on (its `next`) when that is a page of this site."""
    return redirect(back_url(request, fallback))


def _load(request: HttpRequest, *, version: ModelVersion, device: Device | None) -> None:
    try:
        placement = placing.placement_load(version=version, device=device, requested_by=request.user)
    except (Conflict, ValidationError) as exc:
        message_refusal(request, exc)
        return
    state = placement.get_state_display().lower()
    if placement.state == PlacementState.LOADED:
        messages.info(request, f"{version} is already loaded on {placement.device}.")
    else:
        messages.success(request, f"{version} is {state} on {placement.device}; its list follows it.")


class LoadForm(forms.Form):
    version = forms.ModelChoiceField(queryset=ModelVersion.objects.select_related("model"))


@require_POST
@permission_required("serving.add_placement", raise_exception=True)
def device_load(request: HttpRequest, pk: int) -> HttpResponse:
    device = get_object_or_404(Device.objects.select_related("node"), pk=pk)
    form = LoadForm(request.POST)
    if form.is_valid():
        _load(request, version=form.cleaned_data["version"], device=device)
    else:
        messages.error(request, "Choose a version to load.")
    return _back(request, device.get_absolute_url())


@require_POST
@permission_required("serving.add_placement", raise_exception=True)
def version_load(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("model"), pk=pk)
    _load(request, version=version, device=None)
    return _back(request, version.get_absolute_url())


@require_POST
@permission_required("serving.change_placement", raise_exception=True)
def unload(request: HttpRequest, pk: int) -> HttpResponse:
    placement: Placement = get_object_or_404(selectors.placement_list(), pk=pk)
    who = request.user.get_username()
    if placing.placement_unload(placement=placement, reason=f"unloaded by {who}"):
        placement.refresh_from_db(fields=["state"])
        state = placement.get_state_display().lower()
        messages.success(request, f"{placement.version} on {placement.device} is {state}.")
    else:
        state = placement.get_state_display().lower()
        messages.info(request, f"{placement.version} on {placement.device} was already {state}.")
    return _back(request, placement.device.get_absolute_url())


@require_POST
@permission_required("serving.change_placement", raise_exception=True)
def pin(request: HttpRequest, pk: int) -> HttpResponse:
    placement: Placement = get_object_or_404(selectors.placement_list(), pk=pk)
    pinned = request.POST.get("pinned") == "1"
    try:
        placing.placement_pin(placement=placement, pinned=pinned)
    except ValidationError as exc:
        message_refusal(request, exc)
    else:
        what = "pinned: never evicted to make room" if pinned else "unpinned: it may be evicted for room"
        messages.success(request, f"{placement.version} on {placement.device} is {what}.")
    return _back(request, placement.device.get_absolute_url())


class TryForm(forms.Form):
    """Try it on the version page: a prompt to continue or a text to embed, or, for a graph, each
    input's shape and values (`shape-<i>`, `data-<i>`, for the i-th input the version's metadata
    names: apps.serving.selectors.tensor_inputs)."""

    task = forms.ChoiceField(choices=[(t, t) for t in selectors.TRY_TASKS])
    prompt = forms.CharField(max_length=20_000, strip=False, required=False)
    max_new_tokens = forms.IntegerField(min_value=1, max_value=1024, required=False)
    temperature = forms.FloatField(min_value=0.0, max_value=5.0, required=False)

    def request_input(self, *, inputs: list[selectors.TensorInput]) -> dict[str, Any]:
        """The request as the API would send it, with the API's defaults filled in."""
        data = self.cleaned_data
        if data["task"] == TENSORS:
            raw: dict[str, Any] = {"inputs": _tensors(self.data, inputs)}
        elif not data["prompt"]:
            raise ValidationError("prompt: This field is required.")
        elif data["task"] == EMBED:
            raw = {"texts": [data["prompt"]]}
        else:
            raw = {"prompt": data["prompt"]}
            raw.update({k: data[k] for k in ("max_new_tokens", "temperature") if data[k] is not None})
        checked = TASK_INPUTS[data["task"]](data=raw)
        if not checked.is_valid():
            raise ValidationError(
                "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in checked.errors.items())
            )
        return dict(checked.validated_data)


# The shape and values typed for a tensor: numbers between commas, spaces or brackets.
_SEPARATORS = re.compile(r"[\s,\[\]]+")
# At most this many characters of values per input (the runtime caps the values themselves).
TENSOR_TEXT_MAX = 200_000


def _tensors(posted: Any, inputs: list[selectors.TensorInput]) -> dict[str, Any]:
    """Each graph input's shape and values as Try it's form sent them, as the tensors request
    carries them; the graph's dtype is the runtime's to apply."""
    if not inputs:
        raise ValidationError("inputs: the version's metadata names no graph inputs; use the API.")
    tensors = {}
    for i, spec in enumerate(inputs):
        shape_text = str(posted.get(f"shape-{i}", ""))
        values_text = str(posted.get(f"data-{i}", ""))
        if len(values_text) > TENSOR_TEXT_MAX:
            raise ValidationError(f"{spec.name}: at most {TENSOR_TEXT_MAX:,} characters of values.")
        try:
            shape = [int(d) for d in _SEPARATORS.split(shape_text) if d]
            values = [json.loads(v) for v in _SEPARATORS.split(values_text) if v]
        except ValueError:
            raise ValidationError(
                f"{spec.name}: the shape takes whole numbers and the values numbers, "
                "separated by commas or spaces."
            ) from None
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise ValidationError(f"{spec.name}: the values must be numbers.")
        tensors[spec.name] = {"shape": shape, "data": values}
    return tensors


def _answer(task: str, answer: dict[str, Any]) -> dict[str, Any]:
    """What Try it shows of an answer: the text, an embedding's size and first values, or each
    output tensor's dtype, shape and first values."""
    result = answer.get("result") or {}
    shown = {**answer, "task": task}
    if task == EMBED:
        vectors = result.get("embeddings") or [[]]
        shown["first_values"] = ", ".join(f"{x:.4f}" for x in vectors[0][:EMBED_SHOWN])
    elif task == TENSORS:
        shown["outputs"] = [
            {
                "name": name,
                "dtype": tensor.get("dtype", ""),
                "shape": tensor.get("shape", []),
                "first_values": ", ".join(_number(x) for x in (tensor.get("data") or [])[:TENSOR_SHOWN]),
                "more": len(tensor.get("data") or []) > TENSOR_SHOWN,
            }
            for name, tensor in (result.get("outputs") or {}).items()
        ]
    return shown


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@require_POST
@permission_required("serving.add_placement", raise_exception=True)
def version_try(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("model"), pk=pk)
    form = TryForm(request.POST)
    context: dict[str, Any] = {"version": version, "section": "models"}
    if not form.is_valid():
        context["problem"] = " ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
    elif form.cleaned_data["task"] not in tasks_for(version.kind, version.format):
        context["problem"] = f"{version} ({version.kind or 'unknown kind'}) does not answer this request."
    else:
        task = form.cleaned_data["task"]
        try:
            data = form.request_input(inputs=selectors.tensor_inputs(version.metadata))
            answer = inference.infer(version=version, task=task, data=data)
        except ValidationError as exc:
            context["problem"] = " ".join(exc.messages)
        except inference.Refused as refused:  # Redis out of reach too: a 503 saying so
            context["refusal"] = refused
        else:
            context["answer"] = _answer(task, answer)
    template = "serving/_try_result.html" if request.htmx else "serving/try_result.html"
    return render(request, template, context)
