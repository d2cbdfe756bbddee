"""Chat templates: read before they are rendered, rendered only in the sandbox, and a hostile one
refused without running (each hostile template here would leave a file, or print a secret from
the environment, had it run)."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from apps.models.domain import chat_template
from apps.models.domain.chat_template import (
    DEFAULT_TEMPLATE,
    MAX_OUTPUT_CHARS,
    MAX_RANGE,
    TemplateRefused,
    render,
    template_problem,
)

SECRET = "MOC_TEST_SECRET_VALUE"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
# What Llama 3's template looks like in the shape that matters: loops, conditions, the
# special tokens, and raise_exception for roles out of order.
LLAMA_LIKE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def hostile(marker: Path) -> list[str]:
    """Templates that reach Python's internals to write `marker` or read the environment."""
    touch = f"touch {marker}"
    return [
        "{{ cycler.__init__.__globals__.os.popen('" + touch + "').read() }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.environ }}",
        "{{ joiner.__init__.__globals__['os'].popen('" + touch + "').read() }}",
        "{{ namespace['__init__'].__globals__.os.environ['" + SECRET + "'] }}",
        "{{ (lipsum|attr('__globals__')).os.popen('" + touch + "').read() }}",
        "{% set _os = 1 %}{{ _os }}",
        "{% include 'other.jinja' %}",
    ]


@pytest.mark.parametrize("index", range(8))
def test_a_template_reaching_for_python_internals_is_refused_and_never_run(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "MARKER"
    monkeypatch.setenv(SECRET, "s3cret-value")
    template = hostile(marker)[index]

    problem = template_problem(template)
    with pytest.raises(TemplateRefused) as refused:
        render(template, MESSAGES, bos_token="", eos_token="")

    assert problem is not None
    assert str(refused.value) == problem
    assert not marker.exists()
    assert "s3cret-value" not in capsys.readouterr().out + str(refused.value)


def test_the_refusal_names_what_the_template_reached_for() -> None:
    assert template_problem("{{ ''.__class__ }}") == (
        "the chat template reads the attribute '__class__', a Python internal (line 1)"
    )
    assert "reads the item '__init__'" in str(template_problem("{{ namespace['__init__'] }}"))
    assert "loads another template" in str(template_problem("{% import 'x' as y %}"))


def test_what_a_static_reading_cannot_see_the_sandbox_refuses_when_rendered(tmp_path: Path) -> None:
    # the attribute's name is built while rendering, so only the sandbox can see it
    sneaky = "{{ (cycler|attr('__in' ~ 'it__')).__name__ }}"
    mutating = "{{ messages.append({'role': 'system', 'content': 'obey'}) }}"

    assert template_problem(sneaky) is not None  # the __name__ read is seen
    assert template_problem(mutating) is None
    with pytest.raises(TemplateRefused, match="sandbox forbids"):
        render(mutating, MESSAGES, bos_token="", eos_token="")


def test_a_template_that_does_not_parse_is_refused_with_the_parsers_reason() -> None:
    assert str(template_problem("{% for m in messages %}")).startswith("the chat template does not parse")


def test_a_real_style_template_renders_as_transformers_would() -> None:
    assert template_problem(LLAMA_LIKE) is None

    prompt = render(LLAMA_LIKE, MESSAGES, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")

    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_raise_exception_refuses_the_messages_with_the_templates_words() -> None:
    with pytest.raises(TemplateRefused, match="refused the messages: unknown role tool"):
        render(LLAMA_LIKE, [{"role": "tool", "content": "x"}], bos_token="", eos_token="")


def test_the_default_template_tags_each_message_with_its_role() -> None:
    prompt = render(DEFAULT_TEMPLATE, MESSAGES, bos_token="<s>", eos_token="</s>")

    assert prompt == "<s><|system|>\nBe brief.</s>\n<|user|>\nHello</s>\n<|assistant|>\n"
    assert render(
        DEFAULT_TEMPLATE, MESSAGES[:1], bos_token="", eos_token="", add_generation_prompt=False
    ) == ("<|system|>\nBe brief.\n")


def test_a_template_that_writes_without_end_is_stopped_at_the_output_limit() -> None:
    endless = (
        "{% for i in range(9999) %}{% for j in range(9999) %}"
        + "0123456789" * 100
        + "{% endfor %}{% endfor %}"
    )

    with pytest.raises(TemplateRefused, match=f"more than {MAX_OUTPUT_CHARS:,} characters"):
        render(endless, MESSAGES, bos_token="", eos_token="")


def test_a_template_error_is_a_refusal_not_a_crash() -> None:
    with pytest.raises(TemplateRefused, match="the chat template failed"):
        render("{{ 1 + messages }}", MESSAGES, bos_token="", eos_token="")


def test_the_callers_messages_are_never_changed() -> None:
    messages = [{"role": "user", "content": "hi"}]

    render("{% set m = messages[0] %}{{ m }}", messages, bos_token="", eos_token="")

    assert messages == [{"role": "user", "content": "hi"}]


def test_the_sandbox_stops_an_attribute_escape_the_static_check_cannot_see() -> None:
    # the attribute's name is built while rendering: only the sandbox sees it, and gives nothing
    built = "{% set c = messages|map(attribute='__cl' ~ 'ass__')|first %}[{{ c }}]"

    assert template_problem(built) is None
    assert render(built, MESSAGES, bos_token="", eos_token="") == "[]"


@pytest.mark.parametrize(
    "template",
    [
        "{{ messages|map(attribute='__class__')|list }}",
        "{{ messages|sort(attribute='content.__class__') }}",
        "{{ messages|selectattr('__class__')|list }}",
        "{{ messages|groupby('__class__') }}",
    ],
)
def test_an_attribute_named_to_a_filter_is_read_by_the_static_check(template: str) -> None:
    assert "attribute starting with '_'" in str(template_problem(template))


@pytest.mark.parametrize(
    "template",
    [
        # CVE-2025-27516: str.format reached through |attr, the underscores inside a text
        "{{ raise_exception(('{0.__globals__[sys].modules[os].environ[" + SECRET + "]}'|attr('format'))"
        "(raise_exception)) }}",
        # CVE-2024-56326: a stored reference to str.format, called later
        "{% set f = '{0.__globals__[sys].modules[os].environ[" + SECRET + "]}'.format %}"
        "{{ raise_exception(f(raise_exception)) }}",
    ],
)
def test_str_format_reached_indirectly_renders_nothing_and_leaks_nothing(
    template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # jinja2 before 3.1.6 hands the environment back in the refusal's message (pyproject's floor)
    monkeypatch.setenv(SECRET, "s3cret-value")

    assert template_problem(template) is None  # nothing for a static reading to see
    with pytest.raises(TemplateRefused, match="sandbox forbids") as refused:
        render(template, MESSAGES, bos_token="", eos_token="")
    assert "s3cret-value" not in str(refused.value)


def test_a_big_constant_is_never_computed_when_the_template_compiles() -> None:
    # jinja folds constants when compiling: this made 300 MB and kept it in the cached code
    unused = "{% if false %}{{ 'a' * 300000000 }}{{ 'b'|center(300000000) }}{% endif %}hi"

    tracemalloc.start()
    try:
        prompt = render(unused, MESSAGES, bos_token="", eos_token="")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert prompt == "hi"
    assert peak < 20_000_000
    with pytest.raises(TemplateRefused, match=f"more than {MAX_OUTPUT_CHARS:,}"):
        render("{{ 'a' * 300000000 }}", MESSAGES, bos_token="", eos_token="")


@pytest.mark.parametrize(
    "template",
    [
        # each makes a value of 3 to 40 million items, none written out
        "{% set x = 'abcdefghij' %}" + "{% set x = x ~ x %}" * 22,
        "{% set x = ['a'] %}" + "{% set x = x + x %}" * 22,
        "{% set n = 10 %}" + "{% set n = n * n %}" * 15,
        "{% set n = 7 ** 1000000 %}",
        "{% set x = 'x'.ljust(3000000) %}",
        "{% set s = 'a' * 2000 %}{% set x = s|replace('a', s) %}",
        "{% set s = 'a' * 10000 %}{% set x = ([s] * 1000)|join %}",
        "{% set x = '%3000000d' % 1 %}",
        # widths each under the bound, past it together; and str.format's, built in one C call
        "{% set x = '%1900000s%1900000s' % ('a', 'b') %}",
        '{% set x = "{:>800000000}".format(1) %}',
        '{% set x = "{v:>900000000}".format_map({"v": 1}) %}',
        '{% set x = "{:{}}".format(1, 900000000) %}',
    ],
)
def test_a_template_that_makes_a_huge_value_without_writing_it_is_refused_before_making_it(
    template: str,
) -> None:
    assert template_problem(template) is None

    tracemalloc.start()
    try:
        with pytest.raises(TemplateRefused, match="more than|width"):
            render(template, MESSAGES, bos_token="", eos_token="")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 50_000_000


def test_a_template_that_loops_without_writing_is_stopped_at_the_time_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_template, "RENDER_BUDGET_S", 0.2)
    loops = (
        "{% for a in range(9999) %}{% for b in range(9999) %}{% for c in range(9999) %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    )
    recursion = "{% macro f() %}{% for i in range(9999) %}{% endfor %}{{ f() }}{% endmacro %}{{ f() }}"

    for endless in (loops, recursion):
        started = time.monotonic()
        with pytest.raises(TemplateRefused, match="took longer than 0.2 s"):
            render(endless, MESSAGES, bos_token="", eos_token="")
        assert time.monotonic() - started < 10  # the budget is CPU time: a loaded host takes longer


def test_range_is_capped_and_lipsum_is_gone() -> None:
    assert render(f"{{{{ range({MAX_RANGE})|length }}}}", MESSAGES, bos_token="", eos_token="") == str(
        MAX_RANGE
    )
    with pytest.raises(TemplateRefused, match=f"more than {MAX_RANGE:,}"):
        render(f"{{{{ range({MAX_RANGE + 1})|length }}}}", MESSAGES, bos_token="", eos_token="")
    with pytest.raises(TemplateRefused, match="'lipsum' is undefined"):
        render("{% set x = lipsum(20000, html=False) %}", MESSAGES, bos_token="", eos_token="")


def test_the_time_budget_leaves_the_callers_trace_function_in_place() -> None:
    import sys

    def tracer(*_: object) -> None:
        return None

    sys.settrace(tracer)
    try:
        render(LLAMA_LIKE, MESSAGES, bos_token="", eos_token="")
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
