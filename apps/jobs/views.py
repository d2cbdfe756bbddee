from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.domain.statemachine import InvalidTransition
from apps.core.pages import FilteredListView
from apps.jobs import selectors, services
from apps.jobs.domain.kinds import JobKind
from apps.jobs.filters import JobFilter
from apps.jobs.forms import SelftestForm

# The job detail page re-reads its live part this often while the job is not over.
POLL_S = 2
# It shows this many of the latest log lines; the API pages through all of them.
LOG_TAIL = 200


class JobListView(FilteredListView):
    queryset = selectors.job_list()
    filterset_class = JobFilter
    template_name = "jobs/job_list.html"
    section = "jobs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if self.request.user.has_perm("jobs.add_job"):
            context["selftest_form"] = SelftestForm(queues=selectors.queue_choices())
        return context


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(selectors.job_list(), pk=pk)
    events, event_count = selectors.job_event_tail(job=job, limit=LOG_TAIL)
    context = {
        "section": "jobs",
        "job": job,
        "events": events,
        "event_count": event_count,
        "poll_s": POLL_S,
        "can_cancel": not job.terminal and request.user.has_perm("jobs.change_job"),
    }
    template = "jobs/job_detail.html#live" if request.htmx else "jobs/job_detail.html"
    return render(request, template, context)


@require_POST
def selftest_run(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("jobs.add_job"):
        raise PermissionDenied
    form = SelftestForm(request.POST, queues=selectors.queue_choices())
    if not form.is_valid():
        messages.error(request, "Choose a queue that a live worker consumes, or the default queue.")
        return redirect("jobs:list")
    try:
        job = services.job_create(
            kind=JobKind.SELFTEST, queue=form.cleaned_data["queue"], created_by=request.user
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("jobs:list")
    messages.success(request, f"Self-test queued on '{job.queue}'. This page follows it.")
    return redirect(job)


@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("jobs.change_job"):
        raise PermissionDenied
    job = get_object_or_404(selectors.job_list(), pk=pk)
    try:
        job = services.job_cancel(job=job)
    except InvalidTransition:
        messages.error(request, f"Job #{job.pk} is already {job.state}; there is nothing to cancel.")
        return redirect(job)
    messages.success(request, f"Job #{job.pk} is {job.get_state_display().lower()}.")
    return redirect(job)
