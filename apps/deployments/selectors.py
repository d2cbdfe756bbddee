"""Reads of deployments, releases and verification, for the API, the pages and the Overview."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet
from django.urls import reverse

from apps.deployments.domain.states import RELEASE_OPEN, DeploymentState
from apps.deployments.models import CheckResult, Deployment, Release, VerificationRun


def deployment_list() -> QuerySet[Deployment]:
    # Meta.ordering is dropped by the GROUP BY of the count, so the order is given again.
    return (
        Deployment.objects.select_related(
            "registered_model", "current_release__model_version__model", "created_by"
        )
        .annotate(release_count=Count("releases"))
        .order_by("name")
    )


def release_list() -> QuerySet[Release]:
    return Release.objects.select_related(
        "deployment", "model_version__model", "created_by"
    ).prefetch_related("placements")


def verification_run_list() -> QuerySet[VerificationRun]:
    return VerificationRun.objects.select_related("release__deployment").prefetch_related(
        Prefetch("checks", queryset=CheckResult.objects.order_by("id"))
    )


def check_result_list() -> QuerySet[CheckResult]:
    return CheckResult.objects.select_related("run__release__deployment")


def latest_verification(*, deployment: Deployment) -> VerificationRun | None:
    """The newest verification run of any of the deployment's releases."""
    return (
        verification_run_list().filter(release__deployment=deployment).order_by("-created_at", "-id").first()
    )


def overview_cards() -> list[dict]:
    counts = Deployment.objects.aggregate(
        active=Count("pk", filter=Q(state=DeploymentState.ACTIVE)),
        paused=Count("pk", filter=Q(state=DeploymentState.PAUSED)),
        draft=Count("pk", filter=Q(state=DeploymentState.DRAFT)),
    )
    in_progress = Release.objects.filter(state__in=RELEASE_OPEN).count()
    return [
        {
            "label": "Deployments active",
            "value": counts["active"],
            "url": reverse("deployments:list"),
            "hint": f"{counts['paused']} paused · {counts['draft']} draft · "
            f"{in_progress} release{'s' if in_progress != 1 else ''} in progress",
        }
    ]
