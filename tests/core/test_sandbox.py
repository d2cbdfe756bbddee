"""The bounded template sandbox shared by chat templates and alert templates (pure)."""

from __future__ import annotations

import json
import sys
import time
import tracemalloc

import pytest
from jinja2 import ChainableUndefined

from apps.core.domain.sandbox import Limits, Sandbox, TemplateRefused

LIMITS = Limits(template_chars=1_000, output_chars=100, value_chars=10_000, range=50, number_bits=64)


def sandbox(**options: object) -> Sandbox:
    return Sandbox(noun="test template", limits=LIMITS, **options)  # type: ignore[arg-type]


def render(source: str, **context: object) -> str:
    return sandbox().render(source, context, budget_s=0.2)


def test_messages_name_the_template_by_its_noun() -> None:
    env = sandbox()

    assert env.problem("{{ ''.__class__ }}") == (
        "the test template reads the attribute '__class__', a Python internal (line 1)"
    )
    assert env.problem("x" * 1_001) == "the test template is 1,001 characters, more than 1,000"
    with pytest.raises(TemplateRefused, match="^the test template asks for 51 numbers, more than 50$"):
        render("{{ range(51)|list }}")


def test_what_it_writes_and_what_it_makes_have_their_own_bounds() -> None:
    assert render("{{ ('x' * 5000)|length }}") == "5000"  # a value within value_chars
    with pytest.raises(TemplateRefused, match="wrote more than 100 characters"):
        render("{{ 'x' * 101 }}")
    with pytest.raises(TemplateRefused, match="makes a value of 10,001 items, more than 10,000"):
        render("{{ ('x' * 10001)|length }}")
    with pytest.raises(TemplateRefused, match="makes a number of more than 64 bits"):
        render("{{ 2 ** 65 }}")


@pytest.mark.parametrize(
    "source",
    [
        # lists nested in each other: 2^40 texts once printed, compared or sorted
        "{% set ns = namespace(x='abcdefghij') %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}"
        "{% endfor %}{{ ns.x|string|length }}",
        "{% set ns = namespace(x='abcdefghij') %}{% for i in range(40) %}{% set ns.x = (ns.x, ns.x) %}"
        "{% endfor %}{{ ns.x == ns.x }}",
        "{% set ns = namespace(x='abcdefghij') %}{% for i in range(40) %}"
        "{% set ns.x = {'a': ns.x, 'b': ns.x} %}{% endfor %}{{ ns.x|length }}",
        # one text held many times: a short list that prints as gigabytes
        "{% set s = 'x' * 9000 %}{% set l = [s] * 9000 %}{{ l|length }}",
        "{% set s = 'x' * 9000 %}{% set l = [s] %}{% for i in range(40) %}{% set l = l + l %}{% endfor %}",
        "{% set s = 'x' * 9000 %}{{ dict(a=s, b=s)|length }}",
        "{% set s = 'x' * 9000 %}{{ ([s]|batch(5000, s)|list)|length }}",
        "{% set s = 'x' * 9000 %}{% set ns = namespace(a=s, b=s) %}{{ ns|string|length }}",
        "{{ 'x'.encode() * 100000 }}",
    ],
)
def test_a_value_that_would_print_as_more_than_the_bound_is_refused_before_it_is_made(source: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateRefused, match="more than 10,000"):
            render(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 20_000_000
    assert time.monotonic() - started < 10


def test_a_big_list_passed_in_can_be_counted_and_walked_but_not_printed() -> None:
    alerts = [{"labels": {"node": f"gpu-{i:03}"}} for i in range(2_000)]  # prints as ~60k characters

    counted = "{{ alerts|length }} {{ (alerts|selectattr('labels')|first).labels.node }}"
    assert render(counted, alerts=alerts) == "2000 gpu-000"
    assert (
        render("{% for a in alerts %}{% endfor %}{{ alerts[-1].labels.node }}", alerts=alerts) == "gpu-1999"
    )
    with pytest.raises(TemplateRefused, match="prints as more than 10,000"):
        render("{{ alerts|string|length }}", alerts=alerts)


def test_loops_that_write_nothing_are_stopped_at_the_budget_and_the_trace_is_put_back() -> None:
    def tracer(*_: object) -> None:
        return None

    loops = (
        "{% for a in range(50) %}{% for b in range(50) %}{% for c in range(50) %}{% for d in range(50) %}"
        "{% for e in range(50) %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
    )
    sys.settrace(tracer)
    try:
        with pytest.raises(TemplateRefused, match="^the test template took longer than 0.2 s of CPU"):
            render(loops)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)


def test_the_budget_holds_when_python_is_called_from_outside_the_template_mid_render() -> None:
    """Python calls into other code in the middle of a render: an object's __del__, a garbage
    collector callback (hypothesis installs one). The stop raised there used to be swallowed as
    "unraisable", turning tracing off, and the template then ran on unbounded (seen in the full suite)."""
    calls = []

    def note() -> None:
        calls.append(1)

    class Left:
        def __del__(self) -> None:
            if not calls:  # the first one outlasts the budget, then calls into Python
                spin_until = time.thread_time() + 0.3
                while time.thread_time() < spin_until:
                    pass
            note()

    loops = (
        "{% for a in range(50) %}{% for b in range(50) %}{% for c in range(50) %}"
        "{% set x = make() %}{% endfor %}{% endfor %}{% endfor %}"
    )
    with pytest.raises(TemplateRefused, match="took longer than 0.2 s of CPU"):
        render(loops, make=Left)
    assert calls  # __del__ did run in the middle


def test_filters_globals_and_undefined_are_the_callers() -> None:
    env = sandbox(
        undefined=ChainableUndefined, filters={"shout": lambda s: f"{s}!"}, globals={"answer": lambda: 42}
    )

    assert env.render("[{{ a.b.c }}] {{ 'hi'|shout }} {{ answer() }}", {}, budget_s=0.2) == "[] hi! 42"
    with pytest.raises(TemplateRefused, match="width more than 10,000"):
        env.render("{{ 'hi'|shout|center(20000) }}", {}, budget_s=0.2)
    with pytest.raises(TemplateRefused, match="'a' is undefined"):
        sandbox().render("{{ a.b }}", {}, budget_s=0.2)


@pytest.mark.parametrize(
    ("source", "refusal"),
    [
        # an indent is written on every line, once per level
        (
            "{{ [[1, 2], [3, 4]]|tojson(3000000)|length }}",
            "passes tojson an indent of 3,000,000, more than 16",
        ),
        ("{{ [[1, 2], [3, 4]]|tojson(indent=3000000)|length }}", "an indent of 3,000,000"),
        # a wrapstring is written between every two lines
        (
            "{% set w = 'x' * 9000 %}{{ ('a ' * 2000)|wordwrap(1, true, w)|length }}",
            "makes a value of 36,",
        ),
        (
            "{% set w = 'x' * 9000 %}{{ ('a ' * 2000)|wordwrap(width=1, wrapstring=w)|length }}",
            "more than 10,000",
        ),
        # rel and target are written in every link
        (
            "{% set r = 'x' * 9000 %}{{ ('a.com ' * 1600)|urlize(rel=r, target=r)|length }}",
            "more than 10,000",
        ),
        # each scheme is tried on each word
        (
            "{{ ('a ' * 2000)|urlize(extra_schemes=['ab:'] * 1000)|length }}",
            "repeated for each of its 2,001 words: 2,005,000, more than 10,000",
        ),
    ],
)
def test_an_argument_a_filter_repeats_per_line_word_or_link_is_refused_before_it_is_made(
    source: str, refusal: str
) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRefused, match=refusal):
            render(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 5_000_000


def test_json_laid_out_deeper_than_the_bound_is_refused_whoever_gives_tojson() -> None:
    def own_tojson(value: object, indent: int | None = None) -> str:
        return json.dumps(value, indent=indent)

    # 1,000 items 20 levels down: 3,040 characters compact, 320,000 laid out 16 a level
    deep = "{% set ns = namespace(x=[0] * 1000) %}{% for i in range(20) %}{% set ns.x = [ns.x] %}{% endfor %}"
    for env in (sandbox(), sandbox(filters={"tojson": own_tojson})):
        assert env.render(deep + "{{ ns.x|tojson|length }}", {}, budget_s=0.2) == "3040"
        with pytest.raises(TemplateRefused, match="lays out JSON of more than 10,000 characters"):
            env.render(deep + "{{ ns.x|tojson(16)|length }}", {}, budget_s=0.2)
        with pytest.raises(TemplateRefused, match="an indent of 17, more than 16"):
            env.render("{{ [1]|tojson(' ' * 17) }}", {}, budget_s=0.2)


def test_filters_that_repeat_an_argument_still_render_what_real_templates_ask() -> None:
    assert render("{{ {'a': [1]}|tojson(2)|length }}") == "22"
    assert render("{{ 'one two three'|wordwrap(7, wrapstring='|') }}") == "one two|three"
    assert render("{{ 'see www.moc.io'|urlize(target='_blank', extra_schemes=['ftp:']) }}") == (
        'see <a href="https://www.moc.io" rel="noopener" target="_blank">www.moc.io</a>'
    )
