"""factory_boy factories for goals."""

from __future__ import annotations

import factory

from apps.goals.domain.states import GoalState
from apps.goals.domain.targets import GoalKind
from apps.goals.models import Goal, GoalEvent


class GoalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Goal

    title = factory.Sequence(lambda n: f"goal {n}")
    kind = GoalKind.CUSTOM.value
    target = factory.LazyFunction(dict)
    priority = 50
    state = GoalState.DRAFT.value
    owner = None


class GoalEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GoalEvent

    goal = factory.SubFactory(GoalFactory)
    from_state = GoalState.DRAFT.value
    to_state = GoalState.ACTIVE.value
    reason = ""
