from __future__ import annotations

import json

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from apps.core.domain.roles import Role
from apps.core.models import TimeStamped
from apps.goals.domain.queue import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN
from apps.goals.domain.states import EDITABLE, GOAL
from apps.goals.domain.targets import KIND_CHOICES, GoalKind


class Goal(TimeStamped):
    """An operator's objective, with a priority that orders the GPU work done for it."""

    moc_write_role = Role.OPERATOR

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES, default=GoalKind.CUSTOM.value, db_index=True)
    target = models.JSONField(
        default=dict, blank=True, help_text="What counts as done; its shape depends on the kind."
    )
    priority = models.PositiveSmallIntegerField(
        default=PRIORITY_DEFAULT,
        validators=[MinValueValidator(PRIORITY_MIN), MaxValueValidator(PRIORITY_MAX)],
        help_text=f"{PRIORITY_MIN}–{PRIORITY_MAX}; higher gets GPU work first.",
    )
    state = models.CharField(max_length=16, choices=GOAL.choices, default=GOAL.initial, db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="goals"
    )
    due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    progress = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)], help_text="0 to 1."
    )
    outcome = models.TextField(blank=True, help_text="How it ended, in words.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="First activated.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(priority__gte=PRIORITY_MIN, priority__lte=PRIORITY_MAX),
                name="goal_priority_in_range",
            ),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0.0, progress__lte=1.0), name="goal_progress_in_range"
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("goals:detail", args=[self.pk])

    @property
    def editable(self) -> bool:
        return self.state in EDITABLE

    @property
    def target_text(self) -> str:
        return json.dumps(self.target)

    @property
    def progress_percent(self) -> int:
        return round(self.progress * 100)


class GoalEvent(models.Model):
    """One move of a goal through its states: when, by whom, and why."""

    moc_write_role = None

    goal = models.ForeignKey(Goal, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_state = models.CharField(max_length=16, blank=True, help_text="Empty for the goal's creation.")
    to_state = models.CharField(max_length=16, choices=GOAL.choices)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.goal}: {self.from_state or 'created'} → {self.to_state}"
