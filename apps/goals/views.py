from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST
from django.views.generic import DetailView

from apps.core.pages import FilteredListView
from apps.core.transitions import InvalidTransition
from apps.goals import selectors, services
from apps.goals.domain.states import GOAL, verb
from apps.goals.filters import GoalFilter
from apps.goals.forms import GoalCreateForm, GoalTransitionForm
from apps.goals.models import Goal


class GoalListView(FilteredListView):
    """All goals in queue order, with a form for operators to add one."""

    queryset = selectors.goal_list()
    filterset_class = GoalFilter
    template_name = "goals/goal_list.html"
    section = "goals"
    form: GoalCreateForm | None = None

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if self.request.user.has_perm("goals.add_goal"):
            context["form"] = self.form or GoalCreateForm()
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm("goals.add_goal"):
            raise PermissionDenied
        self.form = GoalCreateForm(request.POST)
        if self.form.is_valid():
            goal = services.goal_create(owner=request.user, **self.form.cleaned_data)
            messages.success(
                request, f"Goal “{goal.title}” created as a draft. Activate it to queue its work."
            )
            return redirect(goal)
        return self.get(request, *args, **kwargs)


class GoalDetailView(DetailView):
    queryset = selectors.goal_list()
    template_name = "goals/goal_detail.html"
    context_object_name = "goal"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        goal = self.object
        moves = []
        if self.request.user.has_perm("goals.change_goal"):
            moves = [(dst, verb(goal.state, dst)) for dst in sorted(GOAL.allowed(goal.state))]
        context.update(section="goals", events=selectors.goal_events(goal=goal), moves=moves)
        return context


@require_POST
def goal_transition(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("goals.change_goal"):
        raise PermissionDenied
    goal = get_object_or_404(Goal, pk=pk)
    form = GoalTransitionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a state to move the goal to.")
        return redirect(goal)
    try:
        services.goal_transition(
            goal=goal, to=form.cleaned_data["state"], reason=form.cleaned_data["reason"], actor=request.user
        )
    except InvalidTransition as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Goal is now {goal.state}.")
    return redirect(goal)
