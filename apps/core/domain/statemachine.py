"""State machines as data: which states exist and which moves between them are allowed.

Every stateful table in MOC declares its machine once, in its app's `domain/states.py`;
models take their choices from it and services move rows only through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from apps.core.domain import tones as tone_table

S = TypeVar("S", bound=StrEnum)


class InvalidTransition(Exception):
    """A move the machine does not allow, with a message an operator can read."""

    def __init__(self, machine: str, src: str, dst: str, allowed: frozenset[str]) -> None:
        self.machine, self.src, self.dst = machine, src, dst
        options = ", ".join(sorted(allowed)) or "nothing (it is final)"
        super().__init__(f"{machine} cannot go from '{src}' to '{dst}'; from '{src}' it can go to {options}")


class StateMachine(Generic[S]):
    def __init__(
        self,
        name: str,
        states: type[S],
        initial: S,
        transitions: Mapping[S, set[S]],
        tones: Mapping[S, str] | None = None,
    ) -> None:
        unknown = {s for src, dsts in transitions.items() for s in {src, *dsts}} - set(states)
        if unknown:
            raise ValueError(f"{name}: transitions name unknown states {sorted(unknown)}")
        tone_table.declare(tones or {})
        self.name = name
        self.states = states
        self.initial = initial
        self._next: dict[str, frozenset[str]] = {
            s.value: frozenset(d.value for d in transitions.get(s, set())) for s in states
        }

    def allowed(self, src: str) -> frozenset[str]:
        return self._next.get(src, frozenset())

    def can(self, src: str, dst: str) -> bool:
        return dst in self.allowed(src)

    def check(self, src: str, dst: str) -> None:
        if not self.can(src, dst):
            raise InvalidTransition(self.name, src, dst, self.allowed(src))

    def sources(self, dst: str) -> frozenset[str]:
        """The states from which `dst` can be reached in one move."""
        return frozenset(src for src, dsts in self._next.items() if dst in dsts)

    @property
    def terminal(self) -> frozenset[str]:
        return frozenset(src for src, dsts in self._next.items() if not dsts)

    @property
    def choices(self) -> list[tuple[str, str]]:
        return [(s.value, s.value.replace("_", " ").capitalize()) for s in self.states]
