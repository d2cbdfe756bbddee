"""The release timeline: every transition, traffic change, analysis, verification result and
operator action is a ReleaseEvent, published to the deployment's page once it commits."""

from __future__ import annotations

from typing import Any

from apps.deployments import events
from apps.deployments.models import Release, ReleaseEvent

Cause = ReleaseEvent.Cause


def record(
    release: Release,
    *,
    kind: str,
    cause: str = Cause.ENGINE,
    actor: Any = None,
    message: str = "",
    from_state: str = "",
    to_state: str = "",
    details: dict[str, Any] | None = None,
) -> ReleaseEvent:
    """One timeline entry for `release` as it is now (its traffic share after the event)."""
    event = ReleaseEvent.objects.create(
        release=release,
        kind=kind,
        from_state=from_state,
        to_state=to_state,
        traffic_percent=release.traffic_percent,
        cause=cause,
        actor=actor if actor is not None and getattr(actor, "is_authenticated", False) else None,
        message=message[:500],
        details=details or {},
    )
    events.release_changed(
        deployment_name=release.deployment.name,
        payload={
            "release": release.pk,
            "state": release.state,
            "traffic_percent": release.traffic_percent,
            "step_index": release.step_index,
            "event": {
                "id": event.pk,
                "at": event.at.isoformat(),
                "kind": kind,
                "from_state": from_state,
                "to_state": to_state,
                "cause": cause,
                "actor": event.actor.get_username() if event.actor else "",
                "message": event.message,
            },
        },
    )
    return event
