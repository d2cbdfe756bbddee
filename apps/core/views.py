from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from apps.core import checks, roles, selectors, services
from apps.core.api import errors
from apps.core.domain.roles import Role
from apps.core.filters import AuditEventFilter
from apps.core.forms import ApiKeyForm
from apps.core.pages import FilteredListView


class AuditListView(FilteredListView):
    queryset = selectors.audit_event_list()
    filterset_class = AuditEventFilter
    template_name = "core/audit_list.html"
    section = "audit"


def api_keys(request: HttpRequest) -> HttpResponse:
    new_secret = None
    form = ApiKeyForm(request.POST or None, max_role=roles.role_of(request.user))
    if request.method == "POST" and form.is_valid():
        api_key, new_secret = services.api_key_create(
            owner=request.user,
            acting_role=roles.role_of(request.user),
            name=form.cleaned_data["name"],
            role=Role(form.cleaned_data["role"]),
            expiry_date=form.cleaned_data.get("expiry_date"),
        )
        messages.success(request, f"Key “{api_key.name}” created. Copy it now: it is not shown again.")
        form = ApiKeyForm(max_role=roles.role_of(request.user))
    keys = selectors.api_key_list(owner_id=request.user.pk)
    return render(
        request,
        "core/api_keys.html",
        {"section": "api_keys", "keys": keys, "form": form, "new_secret": new_secret},
    )


@require_POST
def api_key_revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    # By prefix: the primary key carries the hash, which must not appear in URLs or logs.
    api_key = get_object_or_404(selectors.api_key_list(owner_id=request.user.pk), prefix=prefix)
    services.api_key_revoke(api_key=api_key)
    messages.success(request, f"Key “{api_key.name}” revoked.")
    return redirect("core:api_keys")


@login_not_required
@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


@login_not_required
@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to do work: the database, Redis and at least one Celery worker answer.

    Anyone (a load balancer) learns which check failed; why it failed (hosts, errors,
    worker names) only a logged-in user or a holder of the metrics token.
    """
    results = checks.readiness()
    ok = all(r["ok"] for r in results.values())
    if not (request.user.is_authenticated or has_metrics_token(request)):
        results = {name: {"ok": r["ok"]} for name, r in results.items()}
    return JsonResponse({"status": "ok" if ok else "fail", "checks": results}, status=200 if ok else 503)


def has_metrics_token(request: HttpRequest) -> bool:
    """Whether the request carries MOC_METRICS_TOKEN (Prometheus, and /readyz's details)."""
    token = settings.MOC_METRICS_TOKEN
    return bool(token) and request.headers.get("Authorization", "") == f"Bearer {token}"


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return errors.json_404(request, exception)
    return render(request, "core/404.html", {"section": ""}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return errors.json_500(request)
    return HttpResponse(
        "<h1>Something went wrong</h1><p>The error was logged. Try again, or tell an administrator.</p>",
        status=500,
    )
