from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST
from django.views.generic import DetailView

from apps.alerts import selectors, services
from apps.alerts.domain.matchers import format_matchers
from apps.alerts.filters import AlertFilter, AlertRuleFilter, NotificationChannelFilter, SilenceFilter
from apps.alerts.forms import SilenceForm
from apps.alerts.models import Alert, Silence
from apps.core.domain.errors import Conflict
from apps.core.pages import FilteredListView


class AlertListView(FilteredListView):
    queryset = selectors.alert_list()
    filterset_class = AlertFilter
    template_name = "alerts/alert_list.html"
    section = "alerts"
    extra_context = {"tab": "alerts"}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        selectors.mark_silenced(context["object_list"], now=timezone.now())
        return context


class AlertDetailView(DetailView):
    queryset = selectors.alert_list()
    template_name = "alerts/alert_detail.html"
    context_object_name = "alert"
    extra_context = {"section": "alerts", "tab": "alerts"}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        alert = self.object
        selectors.mark_silenced([alert], now=timezone.now())
        same = [
            {"label": k, "op": "=", "value": v} for k, v in sorted(alert.labels.items()) if k != "severity"
        ]
        context.update(
            can_acknowledge=alert.is_open
            and alert.acknowledged_at is None
            and self.request.user.has_perm("alerts.change_alert"),
            silence_matchers=format_matchers(same),
        )
        return context


@require_POST
def alert_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("alerts.change_alert"):
        raise PermissionDenied
    alert = get_object_or_404(Alert, pk=pk)
    try:
        services.alert_acknowledge(alert=alert, user=request.user)
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Acknowledged: others can see you are on it.")
    return redirect(alert)


class AlertRuleListView(FilteredListView):
    queryset = selectors.alert_rule_list()
    filterset_class = AlertRuleFilter
    template_name = "alerts/rule_list.html"
    section = "alerts"
    extra_context = {"tab": "rules"}


class AlertRuleDetailView(DetailView):
    queryset = selectors.alert_rule_list()
    template_name = "alerts/rule_detail.html"
    context_object_name = "rule"
    extra_context = {"section": "alerts", "tab": "rules"}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["recent_alerts"] = selectors.alert_list().filter(rule=self.object)[:20]
        return context


class SilenceListView(FilteredListView):
    """Silences, with a form for operators to add one."""

    queryset = selectors.silence_list()
    filterset_class = SilenceFilter
    template_name = "alerts/silence_list.html"
    section = "alerts"
    extra_context = {"tab": "silences"}
    form: SilenceForm | None = None

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if self.request.user.has_perm("alerts.add_silence"):
            initial = {"matchers": self.request.GET.get("matchers", "")}
            context["form"] = self.form or SilenceForm(initial=initial)
            context["can_expire"] = self.request.user.has_perm("alerts.change_silence")
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm("alerts.add_silence"):
            raise PermissionDenied
        self.form = SilenceForm(request.POST)
        if self.form.is_valid():
            try:
                services.silence_create(
                    created_by=request.user,
                    matchers=self.form.cleaned_data["matchers"],
                    ends_at=timezone.now() + self.form.lasts(),
                    comment=self.form.cleaned_data["comment"],
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    self.form.add_error(field if field in self.form.fields else None, errors)
            else:
                messages.success(request, "Silence created: matching alerts will not notify until it ends.")
                return redirect("alerts:silences")
        return self.get(request, *args, **kwargs)


@require_POST
def silence_expire(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("alerts.change_silence"):
        raise PermissionDenied
    silence = get_object_or_404(Silence, pk=pk)
    try:
        services.silence_expire(silence=silence)
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Silence expired: matching alerts notify again.")
    return redirect("alerts:silences")


class NotificationChannelListView(FilteredListView):
    queryset = selectors.notification_channel_list()
    filterset_class = NotificationChannelFilter
    template_name = "alerts/channel_list.html"
    section = "alerts"
    extra_context = {"tab": "channels"}
