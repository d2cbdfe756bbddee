"""The alerting pages: alerts (acknowledge, silence), rules and their editor, silences, channels
with their deliveries, and the history of what fired."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST
from django.views.generic import DetailView

from apps.alerts import delivering, reports, selectors, services, sources
from apps.alerts.domain.catalog import CATALOG, allowed_labels, spec_dict
from apps.alerts.domain.events import EventKind
from apps.alerts.domain.grouping import ALL_LABELS
from apps.alerts.domain.matchers import format_matchers
from apps.alerts.filters import AlertFilter, AlertRuleFilter, NotificationChannelFilter, SilenceFilter
from apps.alerts.forms import AcknowledgeForm, AlertRuleForm, SilenceForm
from apps.alerts.models import CHANGE_CHANNEL, Alert, AlertRule, NotificationChannel, Silence
from apps.core.domain.errors import Conflict
from apps.core.pages import FilteredListView, back_url, filters_given, message_refusal

# The alerts page shows alerts resolved this recently unless filtered.
RESOLVED_HOURS = 24


def _may(request: HttpRequest, perm: str) -> bool:
    return bool(request.user.has_perm(perm))


class AlertListView(FilteredListView):
    """Firing, then pending, then resolved in the last day (all of them through the state filter).
    Which list it is depends on the filters asked for, never on the page number."""

    queryset = selectors.alert_list()
    filterset_class = AlertFilter
    template_name = "alerts/alert_list.html"
    section = "alerts"
    extra_context = {"tab": "alerts", "resolved_hours": RESOLVED_HOURS}

    def get_queryset(self) -> QuerySet[Alert]:
        queryset = super().get_queryset()
        if not filters_given(self.request):
            return selectors.alerts_page(now=timezone.now(), resolved_hours=RESOLVED_HOURS)
        return queryset

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(can_act=_may(self.request, "alerts.change_alert"), ack_form=AcknowledgeForm())
        return context


class AlertDetailView(DetailView):
    queryset = selectors.alert_list()
    template_name = "alerts/alert_detail.html"
    context_object_name = "alert"
    extra_context = {"section": "alerts", "tab": "alerts"}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        alert = self.object
        may_act = _may(self.request, "alerts.change_alert") and alert.is_open
        context.update(
            can_acknowledge=may_act,
            can_unacknowledge=may_act and alert.acknowledged_at is not None,
            can_silence=_may(self.request, "alerts.add_silence") and alert.is_open,
            ack_form=AcknowledgeForm(initial={"comment": alert.ack_comment}),
            silence_matchers=format_matchers(services.alert_matchers(alert)),
            silences=selectors.silences_matching(alert, now=timezone.now()),
            deliveries=selectors.alert_deliveries(alert),
        )
        return context


@require_POST
def alert_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    if not _may(request, "alerts.change_alert"):
        raise PermissionDenied
    alert = get_object_or_404(Alert, pk=pk)
    form = AcknowledgeForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect(alert)
    try:
        services.alert_acknowledge(
            alert=alert,
            user=request.user,
            comment=form.cleaned_data["comment"],
            expires_at=form.expires_at(),
        )
    except (Conflict, ValidationError) as exc:
        message_refusal(request, exc)
    else:
        messages.success(request, "Acknowledged: others can see you are on it, and repeats are muted.")
    return redirect(back_url(request, alert.get_absolute_url()))


@require_POST
def alert_unacknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    if not _may(request, "alerts.change_alert"):
        raise PermissionDenied
    alert = get_object_or_404(Alert, pk=pk)
    try:
        services.alert_unacknowledge(alert=alert, user=request.user)
    except Conflict as exc:
        message_refusal(request, exc)
    else:
        messages.success(request, "Acknowledgement taken back: repeats notify again.")
    return redirect(alert)


class AlertRuleListView(FilteredListView):
    queryset = selectors.alert_rule_list()
    filterset_class = AlertRuleFilter
    template_name = "alerts/rule_list.html"
    section = "alerts"
    extra_context = {"tab": "rules"}


class AlertRuleDetailView(DetailView):
    queryset = selectors.alert_rule_list().prefetch_related("channels")
    template_name = "alerts/rule_detail.html"
    context_object_name = "rule"
    extra_context = {"section": "alerts", "tab": "rules"}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["recent_alerts"] = selectors.alert_list().filter(rule=self.object)[:20]
        context["spec"] = CATALOG.get(self.object.metric)
        return context


def _catalog_json() -> dict[str, dict[str, Any]]:
    return {spec.name: spec_dict(spec) for spec in CATALOG.values()}


def _event_labels_json() -> dict[str, list[str]]:
    """The labels an event rule's matchers may name, by event: the editor's hints."""
    return {e.value: list(allowed_labels(kind="event", metric="", event=e.value) or ()) for e in EventKind}


def _rule_editor(request: HttpRequest, rule: AlertRule | None) -> HttpResponse:
    form = AlertRuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        saved = form.save()  # audited by the request's model signals (apps/core/audit.py)
        messages.success(request, f"Rule {saved.name} saved: it is evaluated from the next tick.")
        return redirect(saved)
    context = {
        "form": form,
        "rule": rule,
        "catalog": _catalog_json(),
        "event_labels": _event_labels_json(),
        "section": "alerts",
        "tab": "rules",
    }
    return render(request, "alerts/rule_form.html", context, status=400 if form.errors else 200)


@permission_required("alerts.add_alertrule", raise_exception=True)
def rule_create(request: HttpRequest) -> HttpResponse:
    return _rule_editor(request, None)


@permission_required("alerts.change_alertrule", raise_exception=True)
def rule_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _rule_editor(request, get_object_or_404(AlertRule, pk=pk))


@require_GET
@permission_required("alerts.view_alertrule", raise_exception=True)
def label_values(request: HttpRequest) -> JsonResponse:
    """The values each label of a catalogue metric has now: the rule editor's suggestions."""
    metric = request.GET.get("metric", "")
    if metric not in CATALOG:
        return JsonResponse({"metric": [f"unknown metric {metric!r}"]}, status=400)
    return JsonResponse({"metric": metric, "labels": sources.label_values(metric)})


class SilenceListView(FilteredListView):
    """Silences in force first, with a form for operators to add one (prefilled from an alert)."""

    queryset = selectors.silence_list()
    filterset_class = SilenceFilter
    template_name = "alerts/silence_list.html"
    section = "alerts"
    extra_context = {"tab": "silences"}
    form: SilenceForm | None = None

    def _initial(self) -> dict[str, Any]:
        initial: dict[str, Any] = {"matchers": self.request.GET.get("matchers", "")}
        alert_id = self.request.GET.get("alert", "")
        if alert_id.isdigit() and (alert := Alert.objects.filter(pk=alert_id).first()) is not None:
            initial.update(
                matchers=format_matchers(services.alert_matchers(alert)),
                alert=alert.pk,
                expire_on_resolve=alert.is_open,
            )
        return initial

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if _may(self.request, "alerts.add_silence"):
            context["form"] = self.form or SilenceForm(initial=self._initial())
            context["can_expire"] = _may(self.request, "alerts.change_silence")
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not _may(request, "alerts.add_silence"):
            raise PermissionDenied
        self.form = form = SilenceForm(request.POST)
        if form.is_valid():
            alert_id = form.cleaned_data["alert"]
            alert = Alert.objects.filter(pk=alert_id).first() if alert_id else None
            try:
                services.silence_create(
                    created_by=request.user,
                    matchers=form.cleaned_data["matchers"],
                    ends_at=form.ends(),
                    comment=form.cleaned_data["comment"],
                    alert=alert,
                    expire_on_resolve=form.cleaned_data["expire_on_resolve"],
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, "Silence created: matching alerts will not notify until it ends.")
                return redirect("alerts:silences")
        response = self.get(request, *args, **kwargs)
        response.status_code = 400
        return response


@require_POST
def silence_expire(request: HttpRequest, pk: int) -> HttpResponse:
    if not _may(request, "alerts.change_silence"):
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

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        may_change = _may(self.request, CHANGE_CHANNEL)
        for channel in context["object_list"]:  # the page's rows, which the template then lists
            channel.shown = channel.shown_config(may_change=may_change)
        return context


class NotificationChannelDetailView(DetailView):
    """A channel: its settings (whole but the signing secret to those who may change it, redacted
    to the others, as in the API), grouping, and its last deliveries."""

    queryset = selectors.notification_channel_list()
    template_name = "alerts/channel_detail.html"
    context_object_name = "channel"
    extra_context = {"section": "alerts", "tab": "channels"}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        may_change = _may(self.request, CHANGE_CHANNEL)
        context.update(
            config=self.object.shown_config(may_change=may_change),
            deliveries=selectors.channel_deliveries(self.object),
            can_test=may_change,
            each_alone=self.object.group_by == [ALL_LABELS],
        )
        return context


@require_POST
def channel_test(request: HttpRequest, pk: int) -> HttpResponse:
    if not _may(request, CHANGE_CHANNEL):
        raise PermissionDenied
    channel = get_object_or_404(NotificationChannel, pk=pk)
    delivery = delivering.channel_test(channel=channel, user=request.user)
    if delivery.status == "failed" or delivery.error:
        messages.error(request, f"The test was not delivered: {delivery.error or 'see the delivery below'}.")
    else:
        messages.success(request, f"Test sent: {delivery.get_status_display().lower()}.")
    return redirect(channel)


@require_GET
@permission_required("alerts.view_alert", raise_exception=True)
def history(request: HttpRequest) -> HttpResponse:
    summary = reports.history_summary(days=selectors.history_days_default(), now=timezone.now())
    rows = [{**r, "last_fired": parse_datetime(r["last_fired_at"])} for r in summary["rules"]]
    return render(
        request,
        "alerts/history.html",
        {"summary": summary, "rows": rows, "section": "alerts", "tab": "history"},
    )
