"""Chat templates: read before they are rendered, rendered only in the sandbox, and a hostile one
refused without running (each hostile template here would leave a file, or print a secret from
the environment, had it run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.models.domain.chat_template import (
    DEFAULT_TEMPLATE,
    MAX_OUTPUT_CHARS,
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

    assert prompt == "<|system|>\nBe brief.</s>\n<|user|>\nHello</s>\n<|assistant|>\n"
    assert render(
        DEFAULT_TEMPLATE, MESSAGES[:1], bos_token="", eos_token="", add_generation_prompt=False
    ) == ("<|system|>\nBe brief.\n")


def test_a_template_that_writes_without_end_is_stopped_at_the_output_limit() -> None:
    endless = "{% for i in range(100000) %}{% for j in range(100000) %}0123456789{% endfor %}{% endfor %}"

    with pytest.raises(TemplateRefused, match=f"more than {MAX_OUTPUT_CHARS:,} characters"):
        render(endless, MESSAGES, bos_token="", eos_token="")


def test_a_template_error_is_a_refusal_not_a_crash() -> None:
    with pytest.raises(TemplateRefused, match="the chat template failed"):
        render("{{ 1 + messages }}", MESSAGES, bos_token="", eos_token="")


def test_the_callers_messages_are_never_changed() -> None:
    messages = [{"role": "user", "content": "hi"}]

    render("{% set m = messages[0] %}{{ m }}", messages, bos_token="", eos_token="")

    assert messages == [{"role": "user", "content": "hi"}]
