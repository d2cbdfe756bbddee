"""A Jinja sandbox bounded in what a template may reach and in the work it may do.

Templates written by others run here: a model's chat template (apps/models/domain/chat_template.py)
and an operator's alert summaries and notification bodies (apps/alerts/domain/templates.py). One
environment, `Sandbox`, parameterised by what differs between them (the noun its messages use, the
limits, extra filters and globals, how a missing name renders), guards three ways:

- reach: `Sandbox.problem` reads the parsed template (no rendering) and refuses anything that
  names a Python internal (a name, attribute or item starting with "_": `''.__class__`,
  `cycler.__init__`, `self._TemplateReference__context`, `map(attribute='__class__')`) or loads
  another template; jinja2's ImmutableSandboxedEnvironment refuses at run time what a reading
  cannot see (an attribute name built from pieces) and any change to the values passed in.
- size: nothing is evaluated when a template compiles (jinja's constant folding would compute
  `'a' * 300000000` there and keep it in the cached code); the operators (`*`, `**`, `+`, `%`,
  `~`), calls, filters and literals refuse a value past `Limits.value_chars` (or a number past
  `Limits.number_bits`) *before* making it: a width (`center(n)`, `"%0nd"`, `"{:n}"`) is checked
  against the bound, an argument a filter copies once per line, word or link of its subject
  (tojson's indent, wordwrap's wrapstring, urlize's rel and target) is bounded against the subject's
  size, and a container is measured by the text it would print as, so a list of references to one
  big text, or lists nested in each other, cannot print or compare as gigabytes; `range` stops at
  `Limits.range`; `lipsum` is gone. What a filter makes in proportion to its subject alone (an
  escape: urlize's "&#34;" for `"`, tojson's "\\u003c" for `<`) is checked on its result, at most a
  few times a value already within the bound.
- time: a render that runs past its CPU budget is stopped (`_within_budget`), so nested loops that
  write nothing end too.

Pure Python, no Django.
"""

from __future__ import annotations

import inspect
import os
import re
import string
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, wraps
from types import FrameType
from typing import Any

import jinja2
from jinja2 import Environment, Template, TemplateError, Undefined, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

ERROR_CHARS = 2_000  # a failure's message is cut here: it quotes the template's own values


@dataclass(frozen=True, slots=True)
class Limits:
    template_chars: int  # the template's own text
    output_chars: int  # what it writes
    value_chars: int  # any value it makes or prints, measured as the text it prints as (≥ output_chars)
    range: int  # numbers in one range()
    number_bits: int  # an integer it computes


class TemplateRefused(ValueError):
    """The template is not one MOC renders, or its render was refused or failed; args[0] says why."""


class _OutOfTime(BaseException):
    """Raised into the template's frames when the budget is spent: a BaseException, so no
    `except Exception` on its way out (jinja's, a filter's) can swallow it."""


# Statements that reach for other templates: each template is one self-contained text.
_LOADS = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
# Filters and tests whose arguments name an attribute to read (jinja's "a.b.0" form included).
_ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "sort", "selectattr", "rejectattr", "groupby", "sum", "unique", "min", "max"}
)
# A printf-style width or precision ("%9d", "%-*s", "%.5f"): a number there makes that many characters.
_FORMAT_WIDTHS = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
# A str.format field's spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type].
_SPEC_WIDTHS = re.compile(r"^(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?")
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
# Filters and text methods whose numbers are widths or counts of what they make.
_WIDTH_CALLS = frozenset(
    {
        "center",
        "ljust",
        "rjust",
        "zfill",
        "expandtabs",
        "do_center",
        "do_indent",
        "do_wordwrap",
        "do_truncate",
        "do_batch",
        "do_slice",
    }
)
# Filters that copy an argument once per line, word or link of their subject (`_check_repeats`).
_REPEATING = frozenset({"tojson", "wordwrap", "urlize"})
MAX_JSON_INDENT = 16  # characters a level in tojson's layout: real templates use 2 to 4
# What str.splitlines ends a line at: wordwrap wraps each of those lines on its own.
_LINE_BREAKS = ("\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
_SPACES = re.compile(r"\s+")  # what urlize splits its text into words at
# Filters that never print their subject: a big list passed in may be counted, sorted, sliced.
_STRUCTURAL = frozenset(
    {
        "length",
        "count",
        "first",
        "last",
        "list",
        "select",
        "reject",
        "selectattr",
        "rejectattr",
        "map",
        "sort",
        "unique",
        "groupby",
        "batch",
        "slice",
        "sum",
        "min",
        "max",
        "random",
        "reverse",
        "dictsort",
        "items",
        "default",
        "d",
        "attr",
        "join",
    }
)


def _private(node: nodes.Node) -> bool:
    """A constant text naming something private: "_x", or a dotted path with a private part."""
    return (
        isinstance(node, nodes.Const)
        and isinstance(node.value, str)
        and any(part.startswith("_") for part in node.value.split("."))
    )


def _node_problem(node: nodes.Node) -> str | None:
    if isinstance(node, _LOADS):
        return "loads another template, which it may not"
    if isinstance(node, nodes.Name) and node.name.startswith("_"):
        return f"names {node.name!r}, a Python internal"
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        return f"reads the attribute {node.attr!r}, a Python internal"
    if isinstance(node, nodes.Getitem) and _private(node.arg):
        return f"reads the item {node.arg.value!r}, a Python internal"  # type: ignore[attr-defined]
    if isinstance(node, nodes.Filter | nodes.Test) and (
        (node.name in _ATTRIBUTE_FILTERS and any(map(_private, node.args)))
        or any(
            _private(k.value) for k in node.kwargs if k.key == "attribute" or node.name in _ATTRIBUTE_FILTERS
        )
    ):
        return "reads an attribute starting with '_', a Python internal"
    return None


def _size(value: Any) -> int:
    return len(value) if isinstance(value, _SIZED) else 0


def _text_size(value: Any, limit: int) -> int:
    """About how many characters `value` prints as (str(), repr(), tojson), counted without
    printing it and given up once past `limit`: an item is counted each time it appears, as
    printing does, so a list holding one big text many times, or lists nested in each other, is
    measured as the text it would make. A container met again is looked up, not walked again, and
    a container of texts only is summed in C, so the count stays quick for what real templates make."""
    seen: dict[int, int] = {}

    def size(item: Any) -> int:
        if isinstance(item, str | bytes):
            return len(item) + 1
        if isinstance(item, int):
            return item.bit_length() // 3 + 1
        if isinstance(item, Namespace):
            item = item._Namespace__attrs  # what its repr prints
        if not isinstance(item, dict | list | tuple | set | frozenset):
            return 1
        if (known := seen.get(id(item))) is not None:
            return known
        items = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        total = 2 + 3 * len(items)
        if set(map(type, items)) <= {str}:
            total += sum(map(len, items))
        else:
            for child in items:
                total += size(child)
                if total > limit:
                    break
        seen[id(item)] = total
        return total

    return size(value)


def _json_size(value: Any, indent: int, limit: int) -> int:
    """About how many characters `value` prints as in JSON laid out `indent` characters a level,
    counted without printing it and given up once past `limit`: each item of a list or dict starts
    its own line, indented once for every level it is nested at, so a deep or long value laid out
    is much more than its compact text. A container met again at the same depth is looked up."""
    seen: dict[tuple[int, int], int] = {}

    def size(item: Any, depth: int) -> int:
        if not isinstance(item, dict | list | tuple):
            return _text_size(item, limit)
        if (known := seen.get((id(item), depth))) is not None:
            return known
        line = 4 + (depth + 1) * indent  # newline, indent, ", ", ": "
        total = 2 + depth * indent
        for key, child in item.items() if isinstance(item, dict) else enumerate(item):
            total += line + size(child, depth + 1) + (size(key, depth + 1) if isinstance(item, dict) else 0)
            if total > limit:
                break
        seen[(id(item), depth)] = total
        return total

    return size(value, 0)


def _arguments(
    signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """A call's arguments by parameter name, defaults included; none when they do not fit (the
    call itself then fails, with the filter's own message)."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    return bound.arguments


class _Generator(CodeGenerator):
    """Jinja's code generator, with `~` joined by `Sandbox.joined` and each list, tuple and dict
    the template writes out checked by `Sandbox.made`: neither is an operator the sandbox can
    intercept."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.joined((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.made(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # `{% for a, b in … %}`: names to assign, not a value
            super().visit_Tuple(node, frame)
            return
        self.write("environment.made(")
        super().visit_Tuple(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.made(")
        super().visit_Dict(node, frame)
        self.write(")")


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with bounded work. `noun` names the template in every message ("the
    chat template makes a value of …"); `filters` and `globals` are added to (or replace) jinja's,
    and are bounded like them; `undefined` is how a missing name renders; `options` are jinja's
    (trim_blocks, keep_trailing_newline, …)."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(
        self,
        *,
        noun: str,
        limits: Limits,
        undefined: type[Undefined] = Undefined,
        filters: Mapping[str, Callable[..., Any]] | None = None,
        globals: Mapping[str, Any] | None = None,  # noqa: A002  (jinja's own name for them)
        **options: Any,
    ) -> None:
        # optimized=False and a finalize taking the context: nothing is evaluated when compiling.
        super().__init__(
            autoescape=False, optimized=False, finalize=_finalize, undefined=undefined, **options
        )
        self.noun = noun
        self.limits = limits
        self.globals["range"] = self._range
        del self.globals["lipsum"]  # makes paragraphs of text: work without end, and a way to reach globals
        self.globals.update(globals or {})
        self.filters.update(filters or {})
        self.filters = {name: self._bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters["join"] = self._join_filter(self.filters["join"])
        self._templates = lru_cache(maxsize=64)(self._checked_template)

    # -- refusals ----------------------------------------------------------------------------

    def refused(self, problem: str) -> TemplateRefused:
        return TemplateRefused(f"the {self.noun} {problem}")

    def _bounded(self, size: int) -> None:
        if size > self.limits.value_chars:
            raise self.refused(f"makes a value of {size:,} items, more than {self.limits.value_chars:,}")

    def _bounded_text(self, value: Any) -> None:
        """Refuses a value that would print as more than the value bound, before it is printed."""
        if isinstance(value, str):
            self._bounded(len(value))
        elif (
            isinstance(value, (*_SIZED, Namespace))
            and _text_size(value, self.limits.value_chars) > self.limits.value_chars
        ):
            raise self.refused(
                f"makes a value that prints as more than {self.limits.value_chars:,} characters"
            )

    def _bounded_number(self, bits: int) -> None:
        if bits > self.limits.number_bits:
            raise self.refused(f"makes a number of more than {self.limits.number_bits:,} bits")

    def _check_widths(self, widths: Iterable[str]) -> None:
        total = 0
        for width in widths:
            if width == "*":
                raise self.refused("formats with a width it computes, which MOC does not render")
            total += int(width)
            if total > self.limits.value_chars:
                raise self.refused(
                    f"formats with widths of {total:,} characters or more, past {self.limits.value_chars:,}"
                )

    def _check_format(self, fmt: str) -> None:
        """A printf-style format's widths and precisions, all of them together, within the bound."""
        self._check_widths(w for m in _FORMAT_WIDTHS.finditer(fmt) for w in m.groups() if w)

    def _check_str_format(self, pattern: str) -> None:
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
            raise self.refused(f"formats with a malformed pattern: {exc}") from None
        self._check_widths(widths)

    def _check_binop(self, operator: str, left: Any, right: Any) -> None:
        """Refuses, before it is computed, an operation whose result would be past the bounds."""
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                self._bounded_number(left.bit_length() + right.bit_length())
            elif isinstance(left, int) or isinstance(right, int):
                times, sequence = (left, right) if isinstance(left, int) else (right, left)
                self._bounded(_size(sequence) * max(times, 0))
        elif operator == "+":
            self._bounded(_size(left) + _size(right))
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right > 0
        ):
            self._bounded_number(abs(left).bit_length() * right)
        elif operator == "%" and isinstance(left, str):
            self._check_format(left)
            self._bounded_text(right)

    def _check_growth(self, name: str, subject: Any, args: Sequence[Any], *, prints: bool = True) -> None:
        """Refuses a call (a filter, or a method of a text) whose result would be past the value
        bound: a width past it (center, ljust, zfill, indent, wordwrap, ...), any
        value it would print that prints past it (the subject only when `prints`), and the calls
        whose result's size follows from their arguments' sizes."""
        limit = self.limits.value_chars
        for index, arg in enumerate((subject, *args)):
            if index and name in _WIDTH_CALLS and isinstance(arg, int) and arg > limit:
                raise self.refused(f"passes {name.removeprefix('do_')} a width more than {limit:,}")
            if index or prints:
                self._bounded_text(arg)
        if isinstance(subject, str) and name in ("replace", "do_replace") and len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            self._bounded(len(subject) + (subject.count(old) if old else len(subject) + 1) * len(new))
        elif isinstance(subject, str) and name == "expandtabs" and args and isinstance(args[0], int):
            self._bounded(len(subject) + subject.count("\t") * args[0])
        elif isinstance(subject, str) and name == "do_indent" and args:
            width = _size(args[0]) or abs(int(args[0] or 0))
            self._bounded(len(subject) + (subject.count("\n") + 1) * width)
        elif name == "do_format" and isinstance(subject, str):
            self._check_format(subject)

    def _check_repeats(self, name: str, subject: Any, arguments: Mapping[str, Any]) -> None:
        """Refuses, before the filter runs, an argument it copies once per line, word or link of its
        subject when the copies together would be past the value bound (each argument alone is
        within it): tojson's indent (on every line, once per level), wordwrap's wrapstring (between
        lines), urlize's rel and target (in every link) and its extra schemes (each tried on every
        word, in a loop the time budget cannot stop)."""
        limit = self.limits.value_chars
        if name == "tojson":
            indent = arguments.get("indent")
            width = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else None
            if width is None:
                return
            if width > MAX_JSON_INDENT:
                raise self.refused(f"passes tojson an indent of {width:,}, more than {MAX_JSON_INDENT}")
            if _json_size(subject, max(width, 0), limit) > limit:
                raise self.refused(f"lays out JSON of more than {limit:,} characters")
        elif name == "wordwrap" and isinstance(subject, str):
            width, wrapstring = arguments.get("width"), arguments.get("wrapstring")
            wrap = self.newline_sequence if wrapstring is None else str(wrapstring)
            if isinstance(width, int) and width > 0:
                # Two lines in a row hold more than `width` of the text: the second's first word did
                # not fit on the first. Each of splitlines' lines is wrapped (and joined) on its own.
                paragraphs = sum(map(subject.count, _LINE_BREAKS)) + 1
                lines = min(len(subject), 2 * len(subject) // width) + 3 * paragraphs
                self._bounded(len(subject) + lines * len(wrap))
        elif name == "urlize":
            text = str(subject)  # within the bound: _check_growth measured it
            words = _SPACES.subn("", text)[1] + 1
            attributes = len(str(arguments.get("rel") or "")) + len(str(arguments.get("target") or ""))
            # an attribute's character is at most five escaped ("&#34;"); each scheme is tried on each word
            size = len(text) + words * (5 * attributes + _size(arguments.get("extra_schemes")))
            if size > limit:
                raise self.refused(
                    f"passes urlize a rel, target or extra schemes repeated for each of its {words:,} "
                    f"words: {size:,}, more than {limit:,}"
                )

    # -- what the compiled template calls --------------------------------------------------------

    def _range(self, *args: int) -> range:
        numbers = range(*args)
        if len(numbers) > self.limits.range:
            raise self.refused(f"asks for {len(numbers):,} numbers, more than {self.limits.range:,}")
        return numbers

    def _joined(self, sep: str, items: Sequence[Any]) -> None:
        """Refuses a join past the output bound before it is made (items is a list here)."""
        self._bounded(len(sep) * len(items) + sum(map(_size, items)))
        for item in items:
            self._bounded_text(item)

    def _bounded_filter(self, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        prints = name not in _STRUCTURAL
        # by the name templates call it by: a caller's own tojson (alerts') is checked as jinja's is
        signature = inspect.signature(f) if name in _REPEATING else None

        @wraps(f)  # keeps jinja's pass_context/pass_eval_context mark
        def bounded(*args: Any, **kwargs: Any) -> Any:
            values = [a for a in args if not isinstance(a, EvalContext | Context | Environment)]
            if values:
                self._check_growth(f.__name__, values[0], [*values[1:], *kwargs.values()], prints=prints)
                if signature is not None:
                    self._check_repeats(name, values[0], _arguments(signature, args, kwargs))
            result = f(*args, **kwargs)
            self._bounded_text(result)
            return result

        return bounded

    def _join_filter(self, f: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(f)
        def join(eval_ctx: EvalContext, value: Any, d: str = "", attribute: Any = None) -> Any:
            items = list(value)
            self._joined(str(d), items)  # with an attribute, the items' own sizes are not the joined ones
            return f(eval_ctx, items, d, attribute)

        return join

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self._check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        self._bounded_text(result)
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        subject = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(subject, str) and name == "join" and args:
            args = (list(args[0]), *args[1:])
            __self._joined(subject, args[0])
        # a method never prints its own subject (a text is bounded by its length, checked below)
        __self._check_growth(name, subject, [*args, *kwargs.values()], prints=False)
        result = super().call(__context, __obj, *args, **kwargs)
        __self._bounded_text(result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format and format_map, which the sandbox wraps: their widths are checked before the
        string is built (one C call, which the time budget cannot interrupt)."""
        wrapped = super().wrap_str_format(value)
        pattern = getattr(value, "__self__", None)
        if wrapped is None or not isinstance(pattern, str):
            return wrapped

        def checked(*args: Any, **kwargs: Any) -> str:
            self._check_str_format(pattern)
            return wrapped(*args, **kwargs)

        return checked

    def joined(self, values: Sequence[Any]) -> str:
        """`a ~ b ~ …`, refused before it is made when it would be past the output bound."""
        for value in values:
            self._bounded_text(value)
        texts = [str(v) for v in values]
        self._bounded(sum(map(len, texts)))
        return "".join(texts)

    def made(self, value: Any) -> Any:
        """A list, tuple or dict the template writes out, refused when it would print past the bound."""
        self._bounded_text(value)
        return value

    # -- reading and rendering ---------------------------------------------------------------

    def problem(self, source: str) -> str | None:
        """Why `source` is not a template this sandbox renders, or None; reads it, never runs it."""
        if not isinstance(source, str):
            return f"a {self.noun} must be text"
        if len(source) > self.limits.template_chars:
            return f"the {self.noun} is {len(source):,} characters, more than {self.limits.template_chars:,}"
        try:
            tree = self.parse(source)
        except TemplateError as exc:
            return f"the {self.noun} does not parse: {exc}"
        for node in tree.find_all(
            (nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test, *_LOADS)
        ):
            if (problem := _node_problem(node)) is not None:
                line = getattr(node, "lineno", None)
                return f"the {self.noun} {problem} (line {line})" if line else f"the {self.noun} {problem}"
        return None

    def _checked_template(self, source: str) -> Template:
        if (problem := self.problem(source)) is not None:
            raise TemplateRefused(problem)
        return self.from_string(source)

    def render(self, source: str, context: Mapping[str, Any], *, budget_s: float) -> str:
        """`source` rendered over `context`; TemplateRefused when the template is refused, reaches
        for what the sandbox forbids, makes a value or writes more than the bounds allow, fails,
        or takes more than `budget_s` of CPU time."""
        limit = self.limits.output_chars
        parts: list[str] = []
        size = 0
        try:
            template = self._templates(source)
            with _within_budget(budget_s):
                # Rendered piece by piece, so a template that loops to write gigabytes stops at the bound.
                for piece in template.generate(dict(context)):
                    size += len(piece)
                    if size > limit:
                        raise self.refused(f"wrote more than {limit:,} characters")
                    parts.append(piece)
        except _OutOfTime:
            raise self.refused(f"took longer than {budget_s:g} s of CPU time to render") from None
        except TemplateRefused:
            raise
        except SecurityError as exc:
            raise self.refused(f"reached for what the sandbox forbids: {exc}") from exc
        except Exception as exc:  # a template is code: whatever it raises is the template's failure
            raise self.refused(f"failed: {type(exc).__name__}: {exc}"[:ERROR_CHARS]) from exc
        return "".join(parts)


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    """Each `{{ … }}`'s value, refused when it would print past the bound (printing it is one C
    call the time budget cannot interrupt). Taking the context also tells jinja it cannot evaluate
    constant output when the template compiles, which it otherwise does even with the optimizer off."""
    environment = context.environment
    if isinstance(environment, Sandbox):
        environment._bounded_text(value)
    return value


# Code whose frames may take the stop: jinja's own and this module's (filters, checks).
_STOPPABLE = (os.path.dirname(jinja2.__file__), __file__, os.path.abspath(__file__))


@contextmanager
def _within_budget(seconds: float) -> Iterator[None]:
    """Stops what runs inside, in this thread, once it has used `seconds` of CPU, with _OutOfTime.

    CPU time, the thread's own: the work the template does, not the time this thread waits for
    the GIL while other threads hold it (a busy worker must not refuse a good template).

    A trace function (this thread's only: `sys.settrace` is per thread) sees every Python call,
    and every line of the template's own compiled code, so a loop in the template or a macro, or
    one in jinja's Python that calls anything, is stopped within one step. What it cannot interrupt
    is one long call into C; the bounds above keep each such call small. The caller's trace
    function (a debugger, coverage) is put back afterwards.

    The stop is raised only in the template's code, jinja's and this module's: Python also calls
    into other code in the middle of a render (a garbage-collector callback, an object's __del__),
    and an exception raised there is "unraisable" — swallowed, and tracing turned off with it, so
    the template would run on unbounded (seen in the full suite with hypothesis' gc callback). If
    tracing was turned off all the same, the deadline is checked once more at the end."""
    deadline = time.thread_time() + seconds

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        filename = frame.f_code.co_filename
        ours = filename == "<template>" or filename.startswith(_STOPPABLE)
        if ours and time.thread_time() > deadline:
            raise _OutOfTime
        # line by line only in the template's own code, where its loops are
        return trace if filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        yield
        if sys.gettrace() is not trace and time.thread_time() > deadline:
            raise _OutOfTime
    finally:
        sys.settrace(previous)
