"""The jobs list and a job's page (live over /ws/jobs/, apps.jobs.live), and the forms that queue,
cancel and retry jobs. The rules are the job services'; these views only translate."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.core import roles
from apps.core.domain.errors import Conflict
from apps.core.domain.roles import Role
from apps.core.domain.statemachine import InvalidTransition
from apps.core.pages import FilteredListView, message_refusal
from apps.jobs import live, selectors, services
from apps.jobs.domain.kinds import ADMIN_KINDS, KIND_CHOICES, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.filters import JobFilter
from apps.jobs.forms import JOB_FORMS, JobForm, SelftestForm
from apps.jobs.models import Job

# The job detail page re-reads its live part this often while the job is not over, when it has
# no websocket (no JavaScript): the fallback.
POLL_S = 2
# It shows this many of the latest log lines; the API pages through all of them.
LOG_TAIL = live.LOG_TAIL
# A job that ended this way may be retried from its page.
RETRYABLE = frozenset({JobState.FAILED, JobState.CANCELLED})


def _job_kinds_for(request: HttpRequest) -> list[tuple[str, str]]:
    """The kinds this user may queue from the page: (kind, label); convert for admins only."""
    if not request.user.has_perm("jobs.add_job"):
        return []
    admin = roles.role_of(request.user) == Role.ADMIN
    labels = dict(KIND_CHOICES)
    return [(kind, labels[kind]) for kind in JOB_FORMS if admin or kind not in ADMIN_KINDS]


class JobListView(FilteredListView):
    queryset = selectors.job_list()
    filterset_class = JobFilter
    template_name = "jobs/job_list.html"
    section = "jobs"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if self.request.user.has_perm("jobs.add_job"):
            context["selftest_form"] = SelftestForm(queues=selectors.queue_choices())
        context["job_kinds"] = _job_kinds_for(self.request)
        return context


def _detail_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    events, event_count = selectors.job_event_tail(job=job, limit=LOG_TAIL)
    retried, retries = selectors.job_lineage(job=job)
    may_change = request.user.has_perm("jobs.change_job")
    return {
        "section": "jobs",
        "job": job,
        "events": events,
        "event_count": event_count,
        "checkpoints": list(selectors.job_checkpoints(job=job)),
        "retried": retried,
        "retries": retries,
        "poll_s": POLL_S,
        "can_cancel": may_change and not job.terminal,
        "can_save": may_change and job.kind == JobKind.FINE_TUNE and job.state == JobState.RUNNING,
        "can_retry": job.state in RETRYABLE and request.user.has_perm("jobs.add_job"),
        "page_data": {
            "id": job.pk,
            "socket": f"/ws/jobs/{job.pk}/",
            "snapshot": reverse("jobs:live", args=[job.pk]),
            "memory_total_bytes": job.device.memory_total_bytes if job.device else None,
        },
    }


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(selectors.job_list(), pk=pk)
    template = "jobs/job_detail.html#live" if request.htmx else "jobs/job_detail.html"
    return render(request, template, _detail_context(request, job))


@require_GET
def job_live(request: HttpRequest, pk: int) -> JsonResponse:
    """The job page's snapshot (apps.jobs.live.snapshot), read on every websocket (re)connect."""
    job = get_object_or_404(selectors.job_list(), pk=pk)
    return JsonResponse(live.snapshot(job))


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


def job_new(request: HttpRequest, kind: str) -> HttpResponse:
    """A form that queues a job of `kind` (fine_tune, evaluate, benchmark; convert for admins)."""
    form_class = JOB_FORMS.get(kind)
    if form_class is None:
        raise Http404(f"No form queues jobs of kind '{kind}'.")
    if kind not in dict(_job_kinds_for(request)):
        raise PermissionDenied
    form: JobForm = form_class(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = services.job_create(
                kind=form.kind,
                params=form.params(),
                created_by=request.user,
                acting_role=roles.role_of(request.user),
                **form.job_options(),
            )
        except ValidationError as exc:
            form.add_refusal(exc)
        except Conflict as exc:  # no device could take it (the scheduler's reason), and it may not wait
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{job.get_kind_display()} queued as job #{job.pk}.")
            return redirect(job)
    context = {"section": "jobs", "form": form, "kind": kind, "kind_label": dict(KIND_CHOICES)[kind]}
    return render(request, "jobs/job_new.html", context, status=400 if form.errors else 200)


@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel; with `save`, a running fine-tune writes a checkpoint before it stops."""
    if not request.user.has_perm("jobs.change_job"):
        raise PermissionDenied
    job = get_object_or_404(selectors.job_list(), pk=pk)
    save = request.POST.get("save") == "1"
    try:
        job = services.job_cancel(job=job, save=save)
    except InvalidTransition:
        messages.error(request, f"Job #{job.pk} is already {job.state}; there is nothing to cancel.")
        return redirect(job)
    except ValidationError as exc:
        message_refusal(request, exc)
        return redirect(job)
    saved = " It writes a checkpoint before it stops." if save and job.state == JobState.CANCELLING else ""
    messages.success(request, f"Job #{job.pk} is {job.get_state_display().lower()}.{saved}")
    return redirect(job)


@require_POST
def job_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue the job again as a new one (a fine-tune resumes from the last complete checkpoint)."""
    if not request.user.has_perm("jobs.add_job"):
        raise PermissionDenied
    job = get_object_or_404(selectors.job_list(), pk=pk)
    try:
        retry = services.job_retry(job=job, created_by=request.user, acting_role=roles.role_of(request.user))
    except (ValidationError, Conflict) as exc:
        message_refusal(request, exc)
        return redirect(job)
    messages.success(request, f"Job #{job.pk} retried as job #{retry.pk}.")
    return redirect(retry)
