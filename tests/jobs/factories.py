"""factory_boy factories for the jobs tables."""

from __future__ import annotations

import factory

from apps.jobs.domain.kinds import JobKind
from apps.jobs.models import Dataset, Job, JobEvent


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = JobKind.SELFTEST
    queue = "default"


class JobEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JobEvent

    job = factory.SubFactory(JobFactory)
    message = factory.Sequence(lambda n: f"line {n}")


class DatasetFactory(factory.django.DjangoModelFactory):
    """A registered dataset row; its file is the test's to write (at root/path) when it is read."""

    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"dataset-{n}")
    root = "/srv/datasets"
    path = factory.LazyAttribute(lambda o: f"{o.name}.jsonl")
    format = "jsonl"
