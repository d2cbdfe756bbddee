"""Chat templates: the Jinja text a tokenizer ships to turn chat messages into one prompt.

A template is code from the model's folder, and templates have run code on hosts that rendered
them (CVE-2024-34359: llama-cpp-python rendered GGUF templates in a plain Jinja environment). So
a template is rendered here only, never by a library's own `apply_chat_template`, and twice
guarded: `template_problem` reads the parsed template (no rendering) and refuses anything that
reaches for Python internals (a name, attribute or item starting with "_": `''.__class__`,
`cycler.__init__`, `self._TemplateReference__context`, `map(attribute='__class__')`) or for other
templates; and `render` runs it in jinja2's ImmutableSandboxedEnvironment, which refuses at run
time what a static reading cannot see (an attribute name built from pieces) and any mutation of
the values passed in.

A template is also bounded in the work it does, since the worker that renders it holds the
models: the sandbox (apps/core/domain/sandbox.py, shared with alert templates) refuses any value
past MAX_OUTPUT_CHARS before making it, a range past MAX_RANGE, a number past MAX_NUMBER_BITS, and
stops a render that runs past RENDER_BUDGET_S of CPU time.

Pure Python: the registry's validation refuses a hostile template when it reads a folder, the
device worker's runtimes render with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from apps.core.domain.sandbox import Limits, Sandbox, TemplateRefused

MAX_TEMPLATE_CHARS = 200_000  # the largest real templates (tool-calling ones) are ~20k
MAX_OUTPUT_CHARS = 2_000_000  # far beyond any model's context in characters
MAX_RANGE = 10_000  # numbers in one range(): a chat template loops over messages, not numbers
MAX_NUMBER_BITS = 4_096  # numbers in a chat template count messages or days
RENDER_BUDGET_S = 1.0  # CPU seconds; real templates render in milliseconds

# Used when a tokenizer has none: the start-of-text token (models trained with one degrade
# without it; the prompt is tokenized without adding special tokens), then each message on its own
# lines, tagged with its role, closed by the end-of-text token, and an open assistant turn to
# answer in. Role-tagged plain text is what a base model that never saw a chat format continues
# most sensibly.
DEFAULT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "MAX_OUTPUT_CHARS",
    "MAX_TEMPLATE_CHARS",
    "TemplateRefused",
    "render",
    "template_problem",
]


def _raise_exception(message: str) -> NoReturn:
    """What HF templates call to refuse messages they cannot format (roles out of order, ...)."""
    raise TemplateRefused(f"the chat template refused the messages: {message}")


# trim_blocks and lstrip_blocks as transformers renders templates, so the same text comes out.
_ENV = Sandbox(
    noun="chat template",
    limits=Limits(
        template_chars=MAX_TEMPLATE_CHARS,
        output_chars=MAX_OUTPUT_CHARS,
        value_chars=MAX_OUTPUT_CHARS,
        range=MAX_RANGE,
        number_bits=MAX_NUMBER_BITS,
    ),
    globals={"raise_exception": _raise_exception},
    trim_blocks=True,
    lstrip_blocks=True,
)


def template_problem(source: str) -> str | None:
    """Why `source` is not a chat template MOC renders, or None; reads it, never runs it."""
    return _ENV.problem(source)


def render(
    source: str,
    messages: Sequence[dict[str, Any]],
    *,
    bos_token: str,
    eos_token: str,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt `source` makes of `messages`, rendered in the sandbox; TemplateRefused when the
    template is refused, reaches for what the sandbox forbids, refuses the messages, makes a value
    or writes more than MAX_OUTPUT_CHARS, or takes longer than RENDER_BUDGET_S."""
    # Copies: a template sees plain dicts and lists, never the caller's own objects.
    context = {
        "messages": [dict(m) for m in messages],
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
    }
    return _ENV.render(source, context, budget_s=RENDER_BUDGET_S)
