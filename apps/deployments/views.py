"""The deployments pages: the list with each deployment's live version, split and last minute's
figures, and a deployment's page (its split, live charts, release timeline and verification runs,
with the buttons an operator's role and the release's state allow), and its settings page."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.core import roles
from apps.core.domain.errors import Conflict
from apps.core.domain.roles import Role
from apps.core.domain.statemachine import InvalidTransition
from apps.core.pages import FilteredListView, message_refusal
from apps.core.redis_clients import redis_client
from apps.deployments import rollout, selectors, services, wake
from apps.deployments.domain.states import RELEASE, DeploymentState, ReleaseState
from apps.deployments.filters import DeploymentFilter
from apps.deployments.forms import DeploymentSettingsForm, ReleaseForm
from apps.deployments.models import Deployment, Release
from apps.deployments.rollout import replicas

log = logging.getLogger(__name__)

# The deployment page's charts: which figure each draws (static/js/deployment.js), and its title.
CHARTS = [
    ("rps", "Requests per second"),
    ("error_rate", "Error rate (%)"),
    ("p50", "p50 latency (ms)"),
    ("p99", "p99 latency (ms)"),
    ("ttft", "Time to first token, p50 and p99 (ms)"),
    ("itl", "Inter-token latency, p50 and p99 (ms)"),
    ("tokens", "Output tokens per second"),
    ("queue", "Queue wait, p50 and p99 (ms)"),
    ("refusals", "Refusals per second, by reason"),
    ("goodput", "Goodput (requests per second within the SLO)"),
]
# The history ranges the charts offer: the first live, the others from the per-minute rollup.
RANGES = [("15m", "15 min"), ("1h", "1 h"), ("6h", "6 h"), ("24h", "24 h"), ("7d", "7 d")]

# A release's buttons: what each calls, and its label.
ACTIONS: dict[str, tuple[Callable[..., Release], str]] = {
    "promote": (rollout.release_promote, "Promote"),
    "pause": (rollout.release_pause, "Pause"),
    "resume": (rollout.release_resume, "Resume"),
    "abort": (rollout.release_abort, "Abort"),
    "rollback": (rollout.release_rollback, "Roll back"),
}


def _allowed(release: Release, action: str) -> bool:
    state = release.state
    if action == "resume":
        return state == ReleaseState.PAUSED
    if action == "pause":
        return state != ReleaseState.PAUSED and RELEASE.can(state, ReleaseState.PAUSED)
    if action == "promote":
        # Paused before its verification passed, it has nothing to promote yet.
        unverified = state == ReleaseState.PAUSED and release.resume_to in (
            ReleaseState.LOADING,
            ReleaseState.VERIFYING,
        )
        return RELEASE.can(state, ReleaseState.PROMOTED) and not unverified
    if action == "abort":
        return RELEASE.can(state, ReleaseState.ABORTED)
    # A rollback needs somewhere to go back to; a promoted release is rolled back only while it serves.
    if release.previous_release_id is None or not RELEASE.can(state, ReleaseState.ROLLED_BACK):
        return False
    return state != ReleaseState.PROMOTED or release.pk == release.deployment.current_release_id


def release_actions(release: Release) -> list[tuple[str, str]]:
    """The buttons the release's state allows, as (action, label)."""
    return [(action, label) for action, (_, label) in ACTIONS.items() if _allowed(release, action)]


def _recent(deployments: list[Deployment]) -> dict[int, selectors.Recent] | None:
    """Each deployment's last minute of figures, or None while Redis cannot be reached."""
    try:
        return selectors.recent_figures(redis_client(), deployments, now=time.time())
    except redis.RedisError as exc:
        log.warning("deployment figures unavailable: %s", exc)
        return None


class DeploymentListView(FilteredListView):
    queryset = selectors.deployment_list()
    filterset_class = DeploymentFilter
    template_name = "deployments/deployment_list.html"
    section = "deployments"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        rows = list(context["object_list"])
        recent = _recent(rows)
        for deployment in rows:
            deployment.split = selectors.split_of(deployment)
            deployment.recent = recent.get(deployment.pk) if recent is not None else None
        context.update(object_list=rows, figures_down=recent is None)
        return context


def _anomalies(deployment: Deployment) -> list[dict[str, Any]]:
    """The figures that drifted from their own baseline, for the page's badge."""
    return [a.to_dict() for a in selectors.serving_anomalies(deployment=deployment, now=time.time())]


def _deployment(name: str) -> Deployment:
    return get_object_or_404(selectors.deployment_list(), name=name)


def deployment_detail(request: HttpRequest, name: str) -> HttpResponse:
    deployment = _deployment(name)
    user = request.user
    may_act = user.has_perm("deployments.change_release")
    timeline = selectors.release_timeline(deployment=deployment)
    for release in timeline:
        release.actions = release_actions(release) if may_act else []
        release.can_cancel = may_act and release.state == ReleaseState.PENDING
    open_release = selectors.open_release(deployment)
    may_release = (
        user.has_perm("deployments.add_release")
        and open_release is None
        and deployment.state != DeploymentState.RETIRED
    )
    context = {
        "section": "deployments",
        "deployment": deployment,
        "split": selectors.split_of(deployment),
        "open_release": open_release,
        "timeline": timeline,
        "runs": selectors.verification_runs(deployment=deployment),
        "release_form": ReleaseForm(deployment=deployment, may_override=roles.role_of(user) == Role.ADMIN)
        if may_release
        else None,
        "may_edit": user.has_perm("deployments.change_deployment"),
        "serving": wake.readiness(deployment.current_release) if deployment.current_release else None,
        "keep_alive_s": replicas.keep_alive_s(deployment),
        "grants": list(selectors.key_grant_list().filter(deployment=deployment))
        if user.has_perm("deployments.view_keygrant")
        else None,
        "charts": CHARTS,
        "ranges": RANGES,
        # The badge is outside the live part an htmx refresh reads again.
        "anomalies": [] if request.htmx else _anomalies(deployment),
        "live": {
            "ws": f"/ws/deployments/{deployment.name}/",
            "url": deployment.get_absolute_url(),
            "figures": reverse("deployment-figures", args=[deployment.name]),
        },
    }
    template = (
        "deployments/deployment_detail.html#live" if request.htmx else "deployments/deployment_detail.html"
    )
    return render(request, template, context)


@require_POST
@permission_required("deployments.add_release", raise_exception=True)
def release_create(request: HttpRequest, name: str) -> HttpResponse:
    deployment = _deployment(name)
    role = roles.role_of(request.user)
    form = ReleaseForm(request.POST, deployment=deployment, may_override=role == Role.ADMIN)
    if not form.is_valid():
        messages.error(
            request, " ".join(f"{form[f].label}: {' '.join(errors)}" for f, errors in form.errors.items())
        )
        return redirect(deployment)
    try:
        release = services.release_create(
            deployment=deployment,
            model_version=form.cleaned_data["model_version"],
            strategy=form.cleaned_data["strategy"],
            steps=form.cleaned_data["steps"],
            override_gate=form.cleaned_data.get("override_gate", False),
            created_by=request.user,
            acting_role=role,
        )
    except (ValidationError, Conflict) as exc:
        message_refusal(request, exc)
        return redirect(deployment)
    messages.success(
        request, f"Release #{release.pk} of {release.model_version} asked for; this page follows it."
    )
    return redirect(deployment)


@require_POST
@permission_required("deployments.change_release", raise_exception=True)
def release_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    if action not in ACTIONS and action != "cancel":
        raise Http404
    release = get_object_or_404(Release.objects.select_related("deployment", "model_version__model"), pk=pk)
    reason = request.POST.get("reason", "").strip()[:300]
    try:
        if action == "cancel":
            release = services.release_cancel(release=release, reason=reason)
        else:
            release = ACTIONS[action][0](release=release, by=request.user, reason=reason)
    except (ValidationError, Conflict) as exc:
        message_refusal(request, exc)
    except InvalidTransition as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Release #{release.pk} is {release.get_state_display().lower()}.")
    return redirect(release.deployment)


@permission_required("deployments.change_deployment", raise_exception=True)
def deployment_settings(request: HttpRequest, name: str) -> HttpResponse:
    deployment = _deployment(name)
    form = DeploymentSettingsForm(request.POST or None, instance=Deployment.objects.get(pk=deployment.pk))
    if request.method == "POST" and form.is_valid():
        try:
            services.deployment_update(deployment=deployment, **form.changes())
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.error_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, exc)
        else:
            messages.success(request, f"Settings of {deployment} saved.")
            return redirect(deployment)
    return render(
        request,
        "deployments/deployment_settings.html",
        {"section": "deployments", "deployment": deployment, "form": form},
    )
