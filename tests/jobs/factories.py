"""factory_boy factories for the jobs tables."""

from __future__ import annotations

import factory

from apps.jobs.domain.kinds import JobKind
from apps.jobs.models import Job, JobEvent


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
