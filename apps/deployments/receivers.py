"""Deployments' answers to what the registry asks (apps.models.signals), connected in
DeploymentsConfig.ready."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from apps.deployments.domain.states import RELEASE_OPEN
from apps.deployments.models import Deployment, Release
from apps.models.models import ModelVersion
from apps.models.signals import rows_named


def version_moving(sender: Any, *, version: ModelVersion, **kwargs: Any) -> str | None:
    """A release of the version that is live (a deployment's current release) or still in
    progress keeps it from moving: the deployment serves it as a version of its model. One that
    ended is history, and follows the version. A deployment of the model it leaves is no answer
    of this: that model is deleted, and the registry refuses for what keeps it (a PROTECT key)."""
    live = Deployment.objects.filter(current_release__isnull=False).values("current_release")
    using = Release.objects.filter(Q(state__in=RELEASE_OPEN) | Q(pk__in=live), model_version=version)
    return rows_named("live or in-progress releases", using)
