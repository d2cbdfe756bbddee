from rest_framework.routers import DefaultRouter

from apps.jobs.api import datasets, views


def register(router: DefaultRouter) -> None:
    router.register("jobs", views.JobViewSet, basename="job")
    router.register("datasets", datasets.DatasetViewSet, basename="dataset")
