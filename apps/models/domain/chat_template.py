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
models: nothing is evaluated when it compiles (jinja's constant folding would compute
`'a' * 300000000` there and keep it in the cached code); the operators (`*`, `**`, `+`, `%`,
`~`), calls and filters that make big values refuse results past MAX_OUTPUT_CHARS before making
them; `range` stops at MAX_RANGE; `lipsum` is gone; and a render that runs past RENDER_BUDGET_S
is stopped (`_within_budget`).

Pure Python: the registry's validation refuses a hostile template when it reads a folder, the
device worker's runtimes render with it.
"""

from __future__ import annotations

import re
import string
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache, wraps
from types import FrameType
from typing import Any, NoReturn

from jinja2 import Environment, TemplateError, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

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

# Statements that reach for other templates: a chat template is one self-contained text.
_LOADS = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


class TemplateRefused(ValueError):
    """The template is not one MOC renders, or it refused the messages; args[0] says why."""


class _OutOfTime(BaseException):
    """Raised into the template's frames when the budget is spent: a BaseException, so no
    `except Exception` on its way out (jinja's, a filter's) can swallow it."""


def _raise_exception(message: str) -> NoReturn:
    """What HF templates call to refuse messages they cannot format (roles out of order, ...)."""
    raise TemplateRefused(f"the chat template refused the messages: {message}")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict) else 0


def _bounded(size: int) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise TemplateRefused(
            f"the chat template makes a value of {size:,} items, more than {MAX_OUTPUT_CHARS:,}"
        )


def _bounded_number(bits: int) -> None:
    if bits > MAX_NUMBER_BITS:
        raise TemplateRefused(f"the chat template makes a number of more than {MAX_NUMBER_BITS:,} bits")


# A printf-style width or precision ("%9d", "%-*s", "%.5f"): a number there makes that many characters.
_FORMAT_WIDTHS = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_format(fmt: str) -> None:
    """A printf-style format's widths and precisions, all of them together, within the bound."""
    _check_widths(w for m in _FORMAT_WIDTHS.finditer(fmt) for w in m.groups() if w)


# A str.format field's spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type].
_SPEC_WIDTHS = re.compile(r"^(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?")


def _check_str_format(pattern: str) -> None:
    """A str.format pattern's widths and precisions, all together, within the bound, before the
    string is built (one C call, which the time budget cannot interrupt); a width another field
    gives is refused."""
    widths: list[str] = []
    try:
        for _, _, spec, _ in string.Formatter().parse(pattern):
            if spec and "{" in spec:
                widths.append("*")
            elif spec and (found := _SPEC_WIDTHS.match(spec)):
                widths.extend(w for w in found.groups() if w)
    except ValueError as exc:
        raise TemplateRefused(f"the chat template formats with a malformed pattern: {exc}") from None
    _check_widths(widths)


def _check_widths(widths: Iterable[str]) -> None:
    total = 0
    for width in widths:
        if width == "*":
            raise TemplateRefused(
                "the chat template formats with a width it computes, which MOC does not render"
            )
        total += int(width)
        if total > MAX_OUTPUT_CHARS:
            raise TemplateRefused(
                f"the chat template formats with widths of {total:,} characters or more, past "
                f"{MAX_OUTPUT_CHARS:,}"
            )


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuses, before it is computed, an operation whose result would be past the bounds."""
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            _bounded_number(left.bit_length() + right.bit_length())
        elif isinstance(left, int) or isinstance(right, int):
            times, sequence = (left, right) if isinstance(left, int) else (right, left)
            _bounded(_size(sequence) * max(times, 0))
    elif operator == "+":
        _bounded(_size(left) + _size(right))
    elif (
        operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
    ):
        _bounded_number(abs(left).bit_length() * right)
    elif operator == "%" and isinstance(left, str):
        _check_format(left)


def _check_growth(name: str, subject: Any, args: Sequence[Any]) -> None:
    """Refuses a call (a filter, or a method of a text) whose result would be past the output
    bound: any number past it (a width: center, ljust, zfill, indent, ...), and the calls whose
    result's size follows from their arguments' sizes."""
    for arg in (subject, *args):
        if isinstance(arg, int) and arg > MAX_OUTPUT_CHARS:
            raise TemplateRefused(f"the chat template passes {arg:,}, more than {MAX_OUTPUT_CHARS:,}")
    if isinstance(subject, str) and name in ("replace", "do_replace") and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        _bounded(len(subject) + (subject.count(old) if old else len(subject) + 1) * len(new))
    elif isinstance(subject, str) and name == "expandtabs" and args and isinstance(args[0], int):
        _bounded(len(subject) + subject.count("\t") * args[0])
    elif isinstance(subject, str) and name == "do_indent" and args:
        _bounded(len(subject) + (subject.count("\n") + 1) * (_size(args[0]) or abs(int(args[0] or 0))))
    elif name == "do_format" and isinstance(subject, str):
        _check_format(subject)


def _bounded_filter(f: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(f)  # keeps jinja's pass_context/pass_eval_context mark
    def bounded(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not isinstance(a, EvalContext | Context | Environment)]
        if values:
            _check_growth(f.__name__, values[0], [*values[1:], *kwargs.values()])
        result = f(*args, **kwargs)
        _bounded(_size(result))
        return result

    return bounded


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateRefused(f"the chat template asks for {len(numbers):,} numbers, more than {MAX_RANGE:,}")
    return numbers


def _joined(sep: str, items: Sequence[Any]) -> None:
    """Refuses a join past the output bound before it is made (items is a list here)."""
    _bounded(len(sep) * len(items) + sum(map(_size, items)))


@pass_context
def _as_is(context: Context, value: Any) -> Any:
    """Output unchanged. Taking the context tells jinja it cannot evaluate constant output when
    the template compiles, which it otherwise does even with the optimizer off."""
    return value


class _Generator(CodeGenerator):
    """Jinja's code generator, with `~` joined by `_Sandbox.joined`: jinja's own join is not an
    operator the sandbox can intercept."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.joined((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with what makes big values bounded."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        subject = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(subject, str) and name == "join" and args:
            args = (list(args[0]), *args[1:])
            _joined(subject, args[0])
        _check_growth(name, subject, [*args, *kwargs.values()])
        result = super().call(__context, __obj, *args, **kwargs)
        _bounded(_size(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format and format_map, which the sandbox wraps: their widths are checked before the
        string is built (one C call, which the time budget cannot interrupt)."""
        wrapped = super().wrap_str_format(value)
        pattern = getattr(value, "__self__", None)
        if wrapped is None or not isinstance(pattern, str):
            return wrapped

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_str_format(pattern)
            return wrapped(*args, **kwargs)

        return checked

    def joined(self, values: Sequence[Any]) -> str:
        texts = [str(v) for v in values]
        _bounded(sum(map(len, texts)))
        return "".join(texts)


def _join_filter(f: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(f)
    def join(eval_ctx: EvalContext, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        _joined(str(d), items)  # with an attribute, the items' own sizes are not the joined ones
        return f(eval_ctx, items, d, attribute)

    return join


def _environment() -> _Sandbox:
    # trim_blocks and lstrip_blocks as transformers renders templates, so the same text comes out;
    # optimized=False and a finalize taking the context: nothing is evaluated when compiling.
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, autoescape=False, optimized=False, finalize=_as_is)
    env.globals["raise_exception"] = _raise_exception
    env.globals["range"] = _range
    del env.globals["lipsum"]  # makes paragraphs of text: work without end, and a way to reach globals
    env.filters = {name: _bounded_filter(f) for name, f in env.filters.items()}
    env.filters["join"] = _join_filter(env.filters["join"])
    return env


_ENV = _environment()


@contextmanager
def _within_budget(seconds: float) -> Iterator[None]:
    """Stops what runs inside, in this thread, once it has used `seconds` of CPU, with _OutOfTime.

    CPU time, the thread's own: the work the template does, not the time this thread waits for
    the GIL while decode threads hold it (a busy worker must not refuse a good template).

    A trace function (this thread's only: `sys.settrace` is per thread) sees every Python call,
    and every line of the template's own compiled code, so a loop in the template or a macro, or
    one in jinja's Python that calls anything, is stopped within one step. What it cannot interrupt
    is one long call into C; the bounds above keep each such call small. The caller's trace
    function (a debugger, coverage) is put back afterwards."""
    deadline = time.thread_time() + seconds

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if time.thread_time() > deadline:
            raise _OutOfTime
        # line by line only in the template's own code, where its loops are
        return trace if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)


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
    if isinstance(node, nodes.Filter | nodes.Test) and any(
        _private(k.value) for k in node.kwargs if k.key == "attribute"
    ):
        # map(attribute=...), sort(attribute=...), selectattr's first argument is read below
        return "the chat template reads an attribute starting with '_', a Python internal"
    if (
        isinstance(node, nodes.Filter)
        and node.name in _ATTRIBUTE_FILTERS
        and node.args
        and _private(node.args[0])
    ):
        return "the chat template reads an attribute starting with '_', a Python internal"
    return None


# Filters whose first argument names an attribute to read (jinja's "a.b.0" form included).
_ATTRIBUTE_FILTERS = frozenset({"selectattr", "rejectattr", "groupby", "sum", "unique", "min", "max"})


def _private(node: nodes.Node) -> bool:
    """A constant text naming something private: "_x", or a dotted path with a private part."""
    return (
        isinstance(node, nodes.Const)
        and isinstance(node.value, str)
        and any(part.startswith("_") for part in node.value.split("."))
    )


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
    template is refused, reaches for what the sandbox forbids, refuses the messages, makes a value
    or writes more than MAX_OUTPUT_CHARS, or takes longer than RENDER_BUDGET_S."""
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
        with _within_budget(RENDER_BUDGET_S):
            # Rendered piece by piece, so a template that loops to write gigabytes stops at the bound.
            for piece in _compiled(source).generate(context):
                size += len(piece)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateRefused(
                        f"the chat template wrote more than {MAX_OUTPUT_CHARS:,} characters"
                    )
                parts.append(piece)
    except _OutOfTime:
        raise TemplateRefused(
            f"the chat template took longer than {RENDER_BUDGET_S:g} s of CPU time to render"
        ) from None
    except TemplateRefused:
        raise
    except SecurityError as exc:
        raise TemplateRefused(f"the chat template reached for what the sandbox forbids: {exc}") from exc
    except Exception as exc:  # a template is code: whatever it raises is the template's failure
        raise TemplateRefused(f"the chat template failed: {type(exc).__name__}: {exc}"[:2000]) from exc
    return "".join(parts)
