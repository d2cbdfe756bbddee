"""Channel-layer groups for deployments and the messages published to them."""

from __future__ import annotations

from django.utils import timezone

from apps.core import audit, events
from apps.deployments.models import Deployment, Release


def deployment_group(name: str) -> str:
    """Everything about one deployment: its state, its releases, their verification."""
    return f"deployment.{name}"


def publish_deployment(deployment: Deployment, *, action: str) -> None:
    """On commit: the deployment's new state to its group and a line to the activity feed."""
    payload = {"id": deployment.pk, "name": deployment.name, "state": deployment.state}
    events.publish_on_commit(deployment_group(deployment.name), "deployment.updated", payload)
    _activity(f"deployment-{deployment.pk}-{deployment.state}", action, f"deployment {deployment}")


def publish_release(release: Release, *, action: str) -> None:
    payload = {
        "id": release.pk,
        "deployment": release.deployment.name,
        "state": release.state,
        "model_version": release.model_version_id,
    }
    events.publish_on_commit(deployment_group(release.deployment.name), "release.updated", payload)
    _activity(f"release-{release.pk}-{release.state}", action, f"release {release}")


def _activity(event_id: str, action: str, obj: str) -> None:
    """Who did it comes from the request being served; without one it is MOC itself."""
    request = audit.current_request()
    user = getattr(request, "user", None)
    actor = user.get_username() if user is not None and user.is_authenticated else "moc"
    source = "system" if request is None else ("api" if request.path.startswith("/api/") else "page")
    events.publish_on_commit(
        events.ACTIVITY_GROUP,
        "activity.event",
        {
            "id": event_id,
            "at": timezone.now().isoformat(),
            "actor": actor,
            "action": action,
            "object": obj,
            "source": source,
        },
    )
