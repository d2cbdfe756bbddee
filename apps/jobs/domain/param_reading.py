"""Reading a job's parameters from a JSON object: each typed field checked against its bounds, every
problem noted under the parameter's name, unknown names refused (the kinds' own rules are in
domain.params)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from apps.models.domain import naming

Problems = dict[str, str]
GOLDEN_LIMIT = 1000
BENCH_POINTS_LIMIT = 8  # batch sizes, prompt lengths: each at most this many


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Reader:
    """Reads one kind's parameters from a JSON object, noting each problem under its name."""

    def __init__(self, raw: Mapping[str, Any], cls: type[Any], kind: str) -> None:
        self.raw = raw
        self.problems: Problems = {}
        self.defaults: dict[str, Any] = {f.name: f.default for f in fields(cls)}
        for name in raw:
            if name not in self.defaults:
                known = ", ".join(sorted(self.defaults))
                self.problems[str(name)[:60]] = f"A {kind} job takes no such parameter; it takes {known}."

    def given(self, name: str) -> bool:
        return name in self.raw

    def note(self, name: str, problem: str) -> None:
        self.problems.setdefault(name, problem)

    def id(self, name: str, *, required: bool = True) -> int | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self.note(name, "Required: an id.")
            return None
        if not is_whole(value) or value < 1:
            self.note(name, "An id: a whole number above 0.")
            return None
        return int(value)

    def whole(self, name: str, *, low: int, high: int) -> int:
        default = self.defaults[name]
        value = self.raw.get(name, default)
        if not is_whole(value) or not low <= value <= high:
            self.note(name, f"A whole number from {low} to {high:,}.")
            return int(default)
        return int(value)

    def number(self, name: str, *, low: float, high: float, low_open: bool = False) -> float:
        default = self.defaults[name]
        value = self.raw.get(name, default)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
        if ok and (value < low or value > high or (low_open and value == low)):
            ok = False
        if not ok:
            above = f"above {low:g}" if low_open else f"from {low:g}"
            self.note(name, f"A number {above} to {high:g}.")
            return float(default)
        return float(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.raw.get(name, self.defaults[name])
        if value not in choices:
            self.note(name, f"One of {', '.join(choices)}.")
            return str(self.defaults[name])
        return str(value)

    def name(self, name: str) -> str:
        value = self.raw.get(name, self.defaults[name])
        if not isinstance(value, str):
            self.note(name, "A registered model's name, or empty.")
            return ""
        value = value.strip()
        if value and (problem := naming.name_problem(value)):
            # Checked now, not when the finished output is registered hours later.
            self.note(name, problem)
            return ""
        return value

    def ints(self, name: str, *, low: int, high: int) -> tuple[int, ...]:
        default: tuple[int, ...] = self.defaults[name]
        value = self.raw.get(name, list(default))
        if (
            not isinstance(value, list)
            or not 1 <= len(value) <= BENCH_POINTS_LIMIT
            or not all(is_whole(v) and low <= v <= high for v in value)
        ):
            self.note(
                name, f"A list of 1 to {BENCH_POINTS_LIMIT} whole numbers, each from {low} to {high:,}."
            )
            return default
        return tuple(sorted(set(value)))

    def golden(self, name: str) -> tuple[tuple[str, str], ...]:
        value = self.raw.get(name, [])
        pairs: list[tuple[str, str]] = []
        if not isinstance(value, list) or len(value) > GOLDEN_LIMIT:
            self.note(name, f"A list of at most {GOLDEN_LIMIT} [prompt, expected] pairs.")
            return ()
        for number, item in enumerate(value, start=1):
            if isinstance(item, Mapping):
                item = [item.get("prompt"), item.get("expected")]
            if not (
                isinstance(item, list | tuple)
                and len(item) == 2
                and all(isinstance(text, str) for text in item)
                and item[0].strip()
            ):
                self.note(
                    name,
                    f"Pair {number} is not a [prompt, expected] pair of strings "
                    '(or {"prompt": ..., "expected": ...}) with a prompt.',
                )
                return ()
            pairs.append((item[0], item[1]))
        return tuple(pairs)
