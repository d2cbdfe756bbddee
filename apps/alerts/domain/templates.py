"""Operator-written templates: a rule's summary and description, and a webhook channel's body.

They are Jinja, rendered in MOC's bounded sandbox (apps/core/domain/sandbox.py, shared with chat
templates; Alertmanager renders Go templates with full access, #1496): a template that names a
Python internal or loads another template is refused on reading; the immutable sandbox refuses at
run time what a reading cannot see and any change to the values passed in; and the work is
bounded — a value past MAX_VALUE_CHARS (a width, a repetition, a concatenation, a list that would
print as more) is refused before it is made, a number past MAX_NUMBER_BITS too, `range` stops at
MAX_RANGE, the output at MAX_OUTPUT_CHARS, and a render past RENDER_BUDGET_S of CPU is stopped.
So a template that depends on the data (`{% if labels.node == "gpu-07" %}<loops>{% endif %}`),
which passes the check on save, still cannot hang the beat that renders it.

A missing label renders empty (ChainableUndefined): `{{ labels.node }}` on an alert without a
node reads "", and `{{ commonLabels.node.x }}` too, never an error in a notification.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined

from apps.core.domain.sandbox import Limits, Sandbox, TemplateRefused

__all__ = [
    "MAX_OUTPUT_CHARS",
    "SAMPLE_ANNOTATION_CONTEXT",
    "SAMPLE_PAYLOAD",
    "TemplateRefused",
    "annotation_errors",
    "format_value",
    "render_annotations",
    "render_body",
    "template_errors",
]

MAX_TEMPLATE_CHARS = 20_000
MAX_OUTPUT_CHARS = 64 * 1024  # a notification body; receivers refuse far less
# Any value a template makes or prints: room for a big group's whole payload (`payload|tojson`
# before it is cut down), far below what could tie up a worker's memory.
MAX_VALUE_CHARS = 4_000_000
MAX_RANGE = 1_000
MAX_NUMBER_BITS = 4_096
RENDER_BUDGET_S = 0.5  # CPU seconds per text; a real one renders in well under a millisecond
ERROR_CHARS = 200

# A sample group for template_errors: what a body template sees (Alertmanager's webhook payload).
SAMPLE_PAYLOAD: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="GpuHot"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "sample",
    "groupLabels": {"alertname": "GpuHot"},
    "commonLabels": {"alertname": "GpuHot", "severity": "warning", "node": "gpu-01"},
    "commonAnnotations": {"summary": "GPU 0 on gpu-01 is at 91 °C"},
    "externalURL": "https://moc.example.com",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "GpuHot", "severity": "warning", "node": "gpu-01", "device": "0"},
            "annotations": {"summary": "GPU 0 on gpu-01 is at 91 °C"},
            "startsAt": "2025-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://moc.example.com/alerts/1/",
            "fingerprint": "0123456789abcdef",
        }
    ],
}


def _tojson(value: Any, indent: int | None = None) -> str:
    """JSON text of `value` (a body is JSON, not HTML: nothing is escaped for a page)."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


_ENV = Sandbox(
    noun="template",
    limits=Limits(
        template_chars=MAX_TEMPLATE_CHARS,
        output_chars=MAX_OUTPUT_CHARS,
        value_chars=MAX_VALUE_CHARS,
        range=MAX_RANGE,
        number_bits=MAX_NUMBER_BITS,
    ),
    undefined=ChainableUndefined,
    filters={"tojson": _tojson},
    keep_trailing_newline=True,
)


def _render(source: str, context: Mapping[str, Any]) -> str:
    """`source` rendered over `context`; TemplateRefused for any refusal or failure."""
    return _ENV.render(source, context, budget_s=RENDER_BUDGET_S)


def _reason(exc: TemplateRefused) -> str:
    """The refusal as a field's message: "reads the attribute …", the field names the template."""
    return str(exc).removeprefix("the template ")[:ERROR_CHARS]


def format_value(value: float | None) -> str:
    """A value as people read it: 91.5, 3, 1.25e+09; "" when there is none."""
    if value is None or math.isnan(value):
        return ""
    return f"{value:g}"


# A sample alert for annotation_errors: what a rule's summary and description see — every label a
# metric or an event gives (a real alert has some of them; the others render empty), its value as
# text and as a number.
SAMPLE_ANNOTATION_CONTEXT: dict[str, Any] = {
    "labels": {
        "alertname": "GpuHot",
        "severity": "warning",
        "node": "gpu-01",
        "gpu": "0",
        "device": "0",
        "uuid": "GPU-00000000-0000-0000-0000-000000000000",
        "model_name": "NVIDIA H100 80GB HBM3",
        "simulated": "false",
        "health": "ok",
        "state": "running",
        "placement": "1",
        "deployment": "chat",
        "release": "1",
        "model": "llama",
        "version": "1",
        "job": "1",
        "kind": "fine_tune",
        "queue": "gpu",
        "error_class": "RuntimeError",
        "check": "smoke",
    },
    "value": "91.5",
    "raw_value": 91.5,
}


def _annotation_context(labels: Mapping[str, str], value: float | None) -> dict[str, Any]:
    return {"labels": dict(labels), "value": format_value(value), "raw_value": value}


def render_annotations(
    summary: str, description: str, labels: Mapping[str, str], value: float | None
) -> dict[str, str]:
    """An alert's summary and description filled in (empty texts are left out). They see
    `labels` (the alert's labels: `{{ labels.node }}`), `value` (the value as people read it,
    text: "91.5", "" when there is none) and `raw_value` (the number itself, a float or None:
    `{{ (raw_value * 100)|round(1) }} %`). Never raises, and never runs past the sandbox's bounds:
    a template error or refusal keeps the raw text and says why."""
    context = _annotation_context(labels, value)
    annotations = {}
    for name, text in (("summary", summary), ("description", description)):
        if not text:
            continue
        try:
            annotations[name] = _render(text, context)
        except TemplateRefused as exc:
            annotations[name] = f"{text} (template error: {_reason(exc)})"
    return annotations


def annotation_errors(source: str) -> list[str]:
    """What is wrong with a rule's summary or description: it does not parse, reaches for Python
    internals, or fails or is refused when rendered over a sample alert (SAMPLE_ANNOTATION_CONTEXT:
    `labels`, `value`, `raw_value`). Empty when it is fine. Messages name no field: the caller's
    field (summary, description) is the template."""
    if not isinstance(source, str):
        return ["must be text"]
    try:
        _render(source, SAMPLE_ANNOTATION_CONTEXT)
    except TemplateRefused as exc:
        return [_reason(exc)]
    return []


def template_errors(source: str) -> list[str]:
    """What is wrong with a notification body template: it does not parse, reaches for Python
    internals, or fails or is refused when rendered over a sample group (SAMPLE_PAYLOAD). Empty
    when it is fine; each message starts "template: ", the channel config's field."""
    if not isinstance(source, str):
        return ["template: must be text"]
    try:
        render_body(source, SAMPLE_PAYLOAD)
    except TemplateRefused as exc:
        return [f"template: {_reason(exc)}"]
    return []


def render_body(source: str, payload: Mapping[str, Any]) -> str:
    """A notification's body from the operator's template. The template sees the payload's keys
    (`status`, `alerts`, `commonLabels`, …) and `payload` itself (`{{ payload | tojson }}`).
    Raises TemplateRefused."""
    return _render(source, {**payload, "payload": payload})
