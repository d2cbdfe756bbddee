"""The pages and endpoints composed from every app, above all of them: the Overview and /metrics.

Core is the ground floor and imports no app, so what spans the apps is put together here: each
app in settings.MOC_APPS offers its Overview cards (`selectors.overview_cards()`), and each app's
scrape-time figures are a Prometheus collector listed below."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import import_module
from importlib.util import find_spec

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.core import metrics
from apps.core.collectors import StateCollector
from apps.core.selectors import audit_event_list
from apps.core.views import has_metrics_token
from apps.deployments.metrics import DeploymentCollector
from apps.fleet.metrics import FleetCollector
from apps.fleet.selectors import fleet_totals
from apps.jobs.metrics import JobCollector
from apps.jobs.selectors import jobs_finished_per_hour
from apps.serving.metrics import BreakerCollector


@cache
def _card_offers() -> list[Callable[[], list[dict]]]:
    """Each app's `selectors.overview_cards`, in settings.MOC_APPS order, found once per process."""
    offers = []
    for app in settings.MOC_APPS:
        module = f"apps.{app}.selectors"
        if find_spec(module) is not None and (
            offer := getattr(import_module(module), "overview_cards", None)
        ):
            offers.append(offer)
    return offers


def overview_cards() -> list[dict]:
    """One or more cards per app, from the apps that offer them."""
    return [card for offer in _card_offers() for card in offer()]


def overview(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "overview.html",
        {
            "section": "overview",
            "cards": overview_cards(),
            "recent_events": list(audit_event_list()[:15]),
            "job_activity": jobs_finished_per_hour(now=timezone.now()),
            "fleet_totals": fleet_totals(),
        },
    )


@login_not_required
@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    if settings.MOC_METRICS_TOKEN and not has_metrics_token(request):
        return HttpResponseForbidden("metrics need the bearer token set in MOC_METRICS_TOKEN\n")
    return HttpResponse(
        metrics.render(
            settings.PROMETHEUS_MULTIPROC_DIR,
            [StateCollector(), FleetCollector(), BreakerCollector(), DeploymentCollector(), JobCollector()],
        ),
        content_type="text/plain; version=0.0.4; charset=utf-8",
    )
