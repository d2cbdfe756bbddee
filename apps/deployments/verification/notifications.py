"""Notification channels, as the integrations check reaches them: a registry of probes.

Deployments may not import alerts (alerts sit a floor above), so alerts registers a provider here
from its AppConfig.ready: a callable that tries each channel it has configured and says whether
it answered. None registered: no channels to reach.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reached:
    """One notification channel's answer to a reachability probe."""

    channel: str  # its name, as its owner shows it
    ok: bool
    detail: str  # one line: how it answered, or why it did not


# Each provider probes the channels it knows, bounded by the seconds it is given.
Provider = Callable[[float], list[Reached]]

_providers: list[Provider] = []


def register(provider: Provider) -> None:
    """Have the integrations check reach the channels `provider` knows (idempotent)."""
    if provider not in _providers:
        _providers.append(provider)


def unregister(provider: Provider) -> None:
    if provider in _providers:
        _providers.remove(provider)


def providers() -> list[Provider]:
    return list(_providers)
