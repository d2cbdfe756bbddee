"""Reads of goals: the listing in queue order, history, and the Overview cards."""

from __future__ import annotations

from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When
from django.urls import reverse
from django.utils import timezone

from apps.goals.domain.queue import STATE_RANK, QueuedGoal, work_queue
from apps.goals.domain.states import GoalState
from apps.goals.models import Goal, GoalEvent


def goal_list() -> QuerySet[Goal]:
    """Every goal, in the order of domain.queue.listing_order (live first, then queue order)."""
    rank = Case(
        *[When(state=state, then=Value(r)) for state, r in STATE_RANK.items()],
        output_field=IntegerField(),
    )
    return (
        Goal.objects.select_related("owner")
        .annotate(state_rank=rank)
        .order_by("state_rank", "-priority", F("due_at").asc(nulls_last=True), "created_at", "id")
    )


def goal_work_queue() -> list[Goal]:
    """The active goals in the order they get GPU work (domain.queue.work_queue decides)."""
    active = {g.pk: g for g in Goal.objects.select_related("owner").filter(state=GoalState.ACTIVE)}
    return [active[q.id] for q in work_queue(_queued(g) for g in active.values())]


def goal_events(*, goal: Goal) -> QuerySet[GoalEvent]:
    return goal.events.select_related("actor")


def _queued(goal: Goal) -> QueuedGoal:
    return QueuedGoal(
        id=goal.pk, state=goal.state, priority=goal.priority, due_at=goal.due_at, created_at=goal.created_at
    )


def overview_cards() -> list[dict]:
    counts = Goal.objects.aggregate(
        active=Count("pk", filter=Q(state=GoalState.ACTIVE)),
        paused=Count("pk", filter=Q(state=GoalState.PAUSED)),
        draft=Count("pk", filter=Q(state=GoalState.DRAFT)),
        overdue=Count(
            "pk",
            filter=Q(state__in=[GoalState.ACTIVE, GoalState.PAUSED], due_at__lt=timezone.now()),
        ),
    )
    hint = f"{counts['paused']} paused · {counts['draft']} draft"
    if counts["overdue"]:
        hint += f" · {counts['overdue']} overdue"
    return [
        {"label": "Active goals", "value": str(counts["active"]), "url": reverse("goals:list"), "hint": hint}
    ]
