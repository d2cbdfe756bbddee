from rest_framework.routers import DefaultRouter

from apps.goals.api import views


def register(router: DefaultRouter) -> None:
    router.register("goals", views.GoalViewSet, basename="goal")
