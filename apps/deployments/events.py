"""Channel-layer groups of deployments, and what is published to them.

A deployment's page listens on `deployment.<name>`: release changes (state, traffic share, a
timeline entry) and verification checks as they finish. Published on commit, so a page never
hears of a change the database does not have yet.
"""

from __future__ import annotations

from typing import Any

from apps.core import events


def deployment_group(name: str) -> str:
    return f"deployment.{name}"


def release_changed(*, deployment_name: str, payload: dict[str, Any]) -> None:
    """A release moved (state, step, traffic share) or its timeline grew."""
    events.publish_on_commit(deployment_group(deployment_name), "release.changed", payload)


def check_finished(*, deployment_name: str, payload: dict[str, Any]) -> None:
    """One check of a verification run finished (or the run did)."""
    events.publish_on_commit(deployment_group(deployment_name), "verification.check", payload)
