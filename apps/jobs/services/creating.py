"""Creating jobs: parameters checked against the kind and what they name, admin-only kinds, the
room a device kind needs, and retries an operator asks for."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.core import audit, roles
from apps.core import workers as core_workers
from apps.core.domain.errors import Conflict
from apps.core.domain.queues import Queue
from apps.core.domain.roles import Role
from apps.core.domain.units import format_bytes
from apps.jobs import runners
from apps.jobs.domain import kinds
from apps.jobs.domain import params as job_params
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.services.facts import estimate_bytes, need_bytes, params_facts
from apps.jobs.services.lifecycle import dispatcher_kick, job_dispatch, job_log
from apps.models.models import ModelVersion
from apps.serving import placing

log = logging.getLogger(__name__)

KIND_VALUES = tuple(k.value for k in JobKind)


def _unconsumed_queue_problem(queue: str) -> str | None:
    """Why no worker would ever take a job sent to `queue`; None when Redis cannot tell."""
    if queue == Queue.DEFAULT:
        return None
    try:
        live = core_workers.live_queues()
    except redis.RedisError as exc:
        # A monitoring hiccup must not stop work from being queued: accept it unchecked.
        log.warning("cannot read worker heartbeats, queue '%s' accepted unchecked: %s", queue, exc)
        return None
    return kinds.queue_consumer_problem(queue, live)


def _acting_role(created_by: Any, acting_role: Role | None) -> Role | None:
    """The role a request acts as; Role.ADMIN for MOC itself (no user), which may do what an admin may."""
    if created_by is None or not getattr(created_by, "is_authenticated", False):
        return Role.ADMIN
    return acting_role if acting_role is not None else roles.role_of(created_by)


def _check_admin(kind: str, created_by: Any, acting_role: Role | None) -> None:
    """Refuse an admin-only kind to anyone else; MOC itself (no user) may queue it."""
    role = _acting_role(created_by, acting_role)
    if role is not Role.ADMIN:
        raise PermissionDenied(
            f"Only an admin may queue a {kind} job (it unpickles a checkpoint); this request acts as "
            f"{role or 'no role'}."
        )


def _kind_problem(kind: str) -> str | None:
    if kind not in KIND_VALUES:
        return f"Unknown kind '{kind}'; choose from {list(KIND_VALUES)}."
    if not runners.has_runner(kind):
        return f"MOC has no runner for kind {kind} yet, so such a job could never run."
    return None


@transaction.atomic
def job_create(
    *,
    kind: str,
    params: Any = None,
    queue: str = Queue.DEFAULT,
    priority: int = kinds.PRIORITY_DEFAULT,
    max_attempts: int = 3,
    device: Any = None,
    wait_for_room: bool = False,
    created_by: Any = None,
    acting_role: Role | None = None,
    retry_of: Job | None = None,
) -> Job:
    """Queue a job. Its parameters are checked against its kind and what they name (ValidationError
    keyed `params`, one "name: problem" line each); the versions and dataset they name become its
    model_version and dataset. A device kind waits for the dispatcher, which reserves its memory on
    a device (only on `device`, when pinned: its `pinned_device`, kept each time it waits again)
    before sending it there; when no device could take it even by
    evicting idle models, it is refused (PlacementRefused, a 409, with the scheduler's reason) unless
    `wait_for_room`. Other kinds are sent to `queue` once the transaction commits. `acting_role`:
    the request's role where an API key acts below its owner's (an admin-only kind checks it)."""
    raw: Any = {} if params is None else params
    on_device = kind in kinds.DEVICE_KINDS
    problems: dict[str, list[str]] = {}
    if kind_problem := _kind_problem(kind):
        problems["kind"] = [kind_problem]
    elif kind in kinds.ADMIN_KINDS:
        _check_admin(kind, created_by, acting_role)
    if on_device and queue != Queue.DEFAULT:
        problems["queue"] = [
            f"A {kind} job goes to the queue of the device the dispatcher reserves room on; "
            "pin a device instead."
        ]
    elif queue_problem := kinds.queue_problem(queue) or _unconsumed_queue_problem(queue):
        problems["queue"] = [queue_problem]
    if device is not None and not on_device:
        problems["device"] = [f"Only {', '.join(sorted(kinds.DEVICE_KINDS))} jobs run on a device MOC picks."]
    if not kinds.PRIORITY_MIN <= priority <= kinds.PRIORITY_MAX:
        problems["priority"] = [f"Between {kinds.PRIORITY_MIN} and {kinds.PRIORITY_MAX}; higher runs first."]
    if not 1 <= max_attempts <= kinds.MAX_ATTEMPTS_LIMIT:
        problems["max_attempts"] = [f"Between 1 and {kinds.MAX_ATTEMPTS_LIMIT}."]
    parsed: Any = None
    if "kind" not in problems:
        parsed, params_problems = job_params.parse(kind, raw, params_facts(kind, raw))
        if params_problems:
            problems["params"] = [
                f"{name}: {text}" if name else text for name, text in params_problems.items()
            ]
    version_id = getattr(parsed, "base_version", None) or getattr(parsed, "version", None)
    version = ModelVersion.objects.select_related("parent").filter(pk=version_id).first()
    if parsed is not None and (
        memory_problem := _memory_problem(kind, parsed, version, created_by, acting_role)
    ):
        problems.setdefault("params", []).append(f"memory_bytes: {memory_problem}")
    if problems:
        raise ValidationError(problems)
    message = ""
    if on_device:
        message = _room_now(kind, need_bytes(kind, parsed, version), device, wait_for_room)
    job = Job.objects.create(
        kind=kind,
        params=job_params.as_stored(parsed),
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        model_version=version,
        dataset_id=getattr(parsed, "dataset", None),
        pinned_device=device,
        wait_for_room=wait_for_room,
        message=message,
        retry_of=retry_of,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )
    if on_device:
        dispatcher_kick()
    else:
        job_dispatch(job=job)
    return job


def _memory_problem(
    kind: str, parsed: Any, version: ModelVersion | None, created_by: Any, acting_role: Role | None
) -> str | None:
    """Why `memory_bytes` may not be reserved: it is a floor over MOC's estimate, so the ledger never
    shows as free what the job will use; only an admin (who may know the model better) goes below."""
    named = getattr(parsed, "memory_bytes", 0)
    if not named:
        return None
    estimate = estimate_bytes(kind, parsed, version)
    if named >= estimate or _acting_role(created_by, acting_role) is Role.ADMIN:
        return None
    return (
        f"{format_bytes(named)} is below MOC's estimate of {format_bytes(estimate)} ({estimate:,} bytes) "
        "for this job; name at least that, or leave it out. Only an admin may reserve less."
    )


def _room_now(kind: str, need: int, device: Any, wait_for_room: bool) -> str:
    """What the waiting job says while it waits; raises PlacementRefused when no device could take
    it now, even by evicting, and it was not asked to wait for room."""
    try:
        placing.job_room(need_bytes=need, device=device, now=time.time(), dry_run=True)
    except placing.PlacementRefused as refused:
        if not wait_for_room:
            raise placing.PlacementRefused(
                f"No device can take this {kind} job now: {refused}. Queue it with wait_for_room "
                "to wait until one can."
            ) from None
        return f"Waiting for room: {refused}."[:300]
    return "Waiting for the dispatcher."


@transaction.atomic
def job_retry(*, job: Job, created_by: Any, acting_role: Role | None = None) -> Job:
    """A new job doing what a failed or cancelled one did (kind, parameters, priority, attempts,
    wait_for_room, pinned device; its queue for kinds that have one), as its retry: a fine-tune
    resumes from the checkpoints of the job it retries. The parameters are checked again, against
    what they name now."""
    current = Job.objects.select_for_update().get(pk=job.pk)
    if current.state not in (JobState.FAILED, JobState.CANCELLED):
        raise Conflict(
            f"Job #{current.pk} is {current.state}; only a failed or cancelled job can be retried."
        )
    retry = job_create(
        kind=current.kind,
        params=current.params,
        queue=current.queue if current.kind not in kinds.DEVICE_KINDS else Queue.DEFAULT,
        priority=current.priority,
        max_attempts=current.max_attempts,
        device=current.pinned_device,
        wait_for_room=current.wait_for_room,
        created_by=created_by,
        acting_role=acting_role,
        retry_of=current,
    )
    audit.record("retry", current, changes={"retried_as": retry.pk})
    job_log(job_id=current.pk, message=f"Retried as job #{retry.pk}.")
    job_log(job_id=retry.pk, message=f"A retry of job #{current.pk}.")
    return retry
