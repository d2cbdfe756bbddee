"""Operator-written templates render in a sandbox that refuses Python internals (pure)."""

from __future__ import annotations

import json

import pytest

from apps.alerts.domain.templates import (
    MAX_OUTPUT_CHARS,
    SAMPLE_PAYLOAD,
    TemplateRefused,
    render_annotations,
    render_body,
    template_errors,
)


def test_annotations_fill_in_labels_and_value() -> None:
    filled = render_annotations(
        "GPU {{ labels.device }} on {{ labels.node }} at {{ value }} °C",
        "",
        {"node": "gpu-01", "device": "0"},
        91.5,
    )

    assert filled == {"summary": "GPU 0 on gpu-01 at 91.5 °C"}


def test_a_missing_label_renders_empty() -> None:
    assert render_annotations("[{{ labels.model }}]", "", {}, None) == {"summary": "[]"}


def test_a_broken_annotation_keeps_its_text_and_says_why() -> None:
    filled = render_annotations("hot {{ labels.node ", "", {"node": "a"}, 1.0)

    assert filled["summary"].startswith("hot {{ labels.node  (template error: does not parse")


def test_a_body_renders_over_the_payload_with_tojson() -> None:
    body = render_body(
        '{"text": {{ commonAnnotations.summary | tojson }}, "n": {{ alerts | length }}}', SAMPLE_PAYLOAD
    )

    assert json.loads(body) == {"text": SAMPLE_PAYLOAD["commonAnnotations"]["summary"], "n": 1}


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ ''|attr('__class__') }}",
        "{{ alerts | map(attribute='__class__') | list }}",
        "{{ (''|attr('__cla' ~ 'ss__')).mro() }}",
        "{{ alerts.append(1) }}",
        "{% include 'x' %}",
    ],
)
def test_a_template_reaching_for_python_internals_is_refused(source: str) -> None:
    [error] = template_errors(source)

    assert error.startswith("template: ")
    assert "internal" in error or "sandbox forbids" in error or "loads another template" in error
    with pytest.raises(TemplateRefused):
        render_body(source, SAMPLE_PAYLOAD)


@pytest.mark.parametrize(
    "source",
    ["{{ 'x' * 10000000 }}", "{% for i in range(1000) %}{{ 'y' * 1000 }}{% endfor %}", "{{ 9 ** 99999 }}"],
)
def test_output_is_capped(source: str) -> None:
    with pytest.raises(TemplateRefused, match=f"{MAX_OUTPUT_CHARS:,}|bits"):
        render_body(source, SAMPLE_PAYLOAD)


def test_a_good_template_has_no_errors() -> None:
    assert (
        template_errors("{{ status | upper }}: {% for a in alerts %}{{ a.labels.node }} {% endfor %}") == []
    )
