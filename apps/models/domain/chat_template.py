"""Chat templates: the Jinja text a tokenizer ships to turn chat messages into one prompt.

A template is code from the model's folder, and templates have run code on hosts that rendered
them (CVE-2024-34359: llama-cpp-python rendered GGUF templates in a plain Jinja environment). So
a template is rendered here only, never by a library's own `apply_chat_template`, and twice
guarded: `template_problem` reads the parsed template (no rendering) and refuses anything that
reaches for Python internals (a name, attribute or item starting with "_": `''.__class__`,
`cycler.__init__`, `self._TemplateReference__context`) or for other templates; and `render` runs
it in jinja2's ImmutableSandboxedEnvironment, which refuses at run time what a static reading
cannot see (an attribute name built from pieces) and any mutation of the values passed in.

Pure Python: the registry's validation refuses a hostile template when it reads a folder, the
device worker's runtimes render with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NoReturn

from jinja2 import TemplateError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 200_000  # the largest real templates (tool-calling ones) are ~20k
MAX_OUTPUT_CHARS = 2_000_000  # far beyond any model's context in characters

# Used when a tokenizer has none: each message on its own lines, tagged with its role, closed by
# the end-of-text token, and an open assistant turn to answer in. Role-tagged plain text is what a
# base model that never saw a chat format continues most sensibly.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Statements that reach for other templates: a chat template is one self-contained text.
_LOADS = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


class TemplateRefused(ValueError):
    """The template is not one MOC renders, or it refused the messages; args[0] says why."""


def _raise_exception(message: str) -> NoReturn:
    """What HF templates call to refuse messages they cannot format (roles out of order, ...)."""
    raise TemplateRefused(f"the chat template refused the messages: {message}")


def _environment() -> ImmutableSandboxedEnvironment:
    # trim_blocks and lstrip_blocks as transformers renders templates, so the same text comes out.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    return env


_ENV = _environment()


def template_problem(source: str) -> str | None:
    """Why `source` is not a chat template MOC renders, or None; reads it, never runs it."""
    if not isinstance(source, str):
        return "a chat template must be text"
    if len(source) > MAX_TEMPLATE_CHARS:
        return f"the chat template is {len(source):,} characters, more than {MAX_TEMPLATE_CHARS:,}"
    try:
        tree = _ENV.parse(source)
    except TemplateError as exc:
        return f"the chat template does not parse: {exc}"
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test, *_LOADS)):
        problem = _node_problem(node)
        if problem is not None:
            line = getattr(node, "lineno", None)
            return f"{problem} (line {line})" if line else problem
    return None


def _node_problem(node: nodes.Node) -> str | None:
    if isinstance(node, _LOADS):
        return "the chat template loads another template, which a chat template may not"
    if isinstance(node, nodes.Name) and node.name.startswith("_"):
        return f"the chat template names {node.name!r}, a Python internal"
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        return f"the chat template reads the attribute {node.attr!r}, a Python internal"
    if isinstance(node, nodes.Getitem) and _private(node.arg):
        return f"the chat template reads the item {node.arg.value!r}, a Python internal"  # type: ignore[attr-defined]
    if isinstance(node, nodes.Filter | nodes.Test) and node.name == "attr" and any(map(_private, node.args)):
        return "the chat template reads an attribute starting with '_', a Python internal"
    return None


def _private(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Const) and isinstance(node.value, str) and node.value.startswith("_")


@lru_cache(maxsize=32)
def _compiled(source: str) -> Any:
    problem = template_problem(source)
    if problem is not None:
        raise TemplateRefused(problem)
    return _ENV.from_string(source)


def render(
    source: str,
    messages: Sequence[dict[str, Any]],
    *,
    bos_token: str,
    eos_token: str,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt `source` makes of `messages`, rendered in the sandbox; TemplateRefused when the
    template is refused, reaches for what the sandbox forbids, refuses the messages, or writes more
    than MAX_OUTPUT_CHARS."""
    template = _compiled(source)
    # Copies: a template sees plain dicts and lists, never the caller's own objects.
    context = {
        "messages": [dict(m) for m in messages],
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
    }
    parts: list[str] = []
    size = 0
    try:
        # Rendered piece by piece, so a template that loops to write gigabytes stops at the bound.
        for piece in template.generate(context):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateRefused(f"the chat template wrote more than {MAX_OUTPUT_CHARS:,} characters")
            parts.append(piece)
    except TemplateRefused:
        raise
    except SecurityError as exc:
        raise TemplateRefused(f"the chat template reached for what the sandbox forbids: {exc}") from exc
    except Exception as exc:  # a template is code: whatever it raises is the template's failure
        raise TemplateRefused(f"the chat template failed: {type(exc).__name__}: {exc}"[:2000]) from exc
    return "".join(parts)
