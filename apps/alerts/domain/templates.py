"""Operator-written templates: a rule's summary and description, and a webhook channel's body.

They are Jinja, rendered in jinja2's ImmutableSandboxedEnvironment (Alertmanager renders Go
templates with full access, #1496). Three guards, as for chat templates
(apps/models/domain/chat_template.py): the parsed template is read first and refused when it
names anything starting with "_" (`''.__class__`, `cycler.__init__.__globals__`,
`self._TemplateReference__context`, `map(attribute='__class__')`) or loads another template; the
sandbox refuses at run time what a reading cannot see (`mro`, an attribute name built from pieces)
and any change to the values passed in; and the work is bounded: `*`, `**` and `range` refuse
results past MAX_OUTPUT_CHARS, and the output is cut off at MAX_OUTPUT_CHARS while it is written.

A missing label renders empty (ChainableUndefined): `{{ labels.node }}` on an alert without a
node reads "", and `{{ commonLabels.node.x }}` too, never an error in a notification.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 20_000
MAX_OUTPUT_CHARS = 64 * 1024  # a notification body; receivers refuse far less
MAX_RANGE = 1_000
MAX_NUMBER_BITS = 4_096
ERROR_CHARS = 200


class TemplateRefused(ValueError):
    """The template is not one MOC renders, or its render was refused; args[0] says why."""


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

_LOADS = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
# Filters and tests whose arguments name an attribute to read.
_ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "sort", "selectattr", "rejectattr", "groupby", "sum", "unique", "min", "max"}
)


def _tojson(value: Any, indent: int | None = None) -> str:
    """JSON text of `value` (a body is JSON, not HTML: nothing is escaped for a page)."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateRefused(f"range of {len(numbers):,} numbers, more than {MAX_RANGE:,}")
    return numbers


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict) else 0


def _too_big_power(operator: str, left: Any, right: Any) -> bool:
    if operator != "**" or not isinstance(left, int) or not isinstance(right, int):
        return False
    return abs(left) > 1 and left.bit_length() * right > MAX_NUMBER_BITS


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` and `**` refusing results past the output bound."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for a, b in ((left, right), (right, left)):
                if isinstance(b, int) and _size(a) * b > MAX_OUTPUT_CHARS:
                    raise TemplateRefused(f"makes a value of more than {MAX_OUTPUT_CHARS:,} items")
        if _too_big_power(operator, left, right):
            raise TemplateRefused(f"makes a number of more than {MAX_NUMBER_BITS:,} bits")
        return super().call_binop(context, operator, left, right)


def _environment() -> _Sandbox:
    env = _Sandbox(autoescape=False, undefined=ChainableUndefined, keep_trailing_newline=True)
    del env.globals["lipsum"]  # text without end, and a way to reach globals
    env.globals["range"] = _range
    env.filters["tojson"] = _tojson
    return env


_ENV = _environment()


def _private(node: nodes.Node) -> bool:
    """A constant text naming something private: "_x", or a dotted path with a private part."""
    return (
        isinstance(node, nodes.Const)
        and isinstance(node.value, str)
        and any(part.startswith("_") for part in node.value.split("."))
    )


def _node_problem(node: nodes.Node) -> str | None:
    if isinstance(node, _LOADS):
        return "loads another template, which a notification template may not"
    if isinstance(node, nodes.Name) and node.name.startswith("_"):
        return f"names {node.name!r}, a Python internal"
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        return f"reads the attribute {node.attr!r}, a Python internal"
    if isinstance(node, nodes.Getitem) and _private(node.arg):
        return "reads an item starting with '_', a Python internal"
    if (
        isinstance(node, nodes.Filter | nodes.Test)
        and node.name in _ATTRIBUTE_FILTERS
        and (any(map(_private, node.args)) or any(_private(k.value) for k in node.kwargs))
    ):
        return "reads an attribute starting with '_', a Python internal"
    return None


def _read_problem(source: str) -> str | None:
    """Why `source` is refused on reading alone, or None."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return f"the template is {len(source):,} characters, more than {MAX_TEMPLATE_CHARS:,}"
    try:
        tree = _ENV.parse(source)
    except TemplateError as exc:
        return f"does not parse: {exc}"
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test, *_LOADS)):
        if (problem := _node_problem(node)) is not None:
            line = getattr(node, "lineno", None)
            return f"{problem} (line {line})" if line else problem
    return None


@lru_cache(maxsize=128)
def _compiled(source: str) -> Any:
    if (problem := _read_problem(source)) is not None:
        raise TemplateRefused(problem)
    return _ENV.from_string(source)


def _render(source: str, context: Mapping[str, Any]) -> str:
    """`source` rendered over `context`; TemplateRefused for any refusal or failure."""
    template = _compiled(source)
    parts: list[str] = []
    size = 0
    try:
        for piece in template.generate(dict(context)):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateRefused(f"wrote more than {MAX_OUTPUT_CHARS:,} characters")
            parts.append(piece)
    except TemplateRefused:
        raise
    except SecurityError as exc:
        raise TemplateRefused(f"reached for what the sandbox forbids: {exc}") from exc
    except Exception as exc:  # a template is code: whatever it raises is the template's failure
        raise TemplateRefused(f"failed: {type(exc).__name__}: {exc}"[:ERROR_CHARS]) from exc
    return "".join(parts)


def format_value(value: float | None) -> str:
    """A value as people read it: 91.5, 3, 1.25e+09; "" when there is none."""
    if value is None or math.isnan(value):
        return ""
    return f"{value:g}"


def render_annotations(
    summary: str, description: str, labels: Mapping[str, str], value: float | None
) -> dict[str, str]:
    """An alert's summary and description with `{{ labels.<name> }}` and `{{ value }}` filled in
    (empty texts are left out). Never raises: a template error keeps the raw text and says why."""
    context = {"labels": dict(labels), "value": format_value(value), "raw_value": value}
    annotations = {}
    for name, text in (("summary", summary), ("description", description)):
        if not text:
            continue
        try:
            annotations[name] = _render(text, context)
        except TemplateRefused as exc:
            annotations[name] = f"{text} (template error: {exc})"
    return annotations


def template_errors(source: str) -> list[str]:
    """What is wrong with a body template: it does not parse, reaches for Python internals, or
    fails or is refused when rendered over a sample group. Empty when it is fine."""
    if not isinstance(source, str):
        return ["template: must be text"]
    try:
        render_body(source, SAMPLE_PAYLOAD)
    except TemplateRefused as exc:
        return [f"template: {exc}"]
    return []


def render_body(source: str, payload: Mapping[str, Any]) -> str:
    """A notification's body from the operator's template. The template sees the payload's keys
    (`status`, `alerts`, `commonLabels`, …) and `payload` itself (`{{ payload | tojson }}`).
    Raises TemplateRefused."""
    return _render(source, {**payload, "payload": payload})
