"""Reads of datasets, for the API, the pages and the job forms."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.jobs.domain.states import DatasetState
from apps.jobs.models import Dataset


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.select_related("created_by")


def dataset_usable() -> QuerySet[Dataset]:
    """The datasets a job may use: validated and not archived."""
    return dataset_list().filter(state=DatasetState.VALID, archived=False)
