"""factory_boy factories for core's tables (API keys come from services.api_key_create)."""

from __future__ import annotations

import factory

from apps.core.domain.states import DeliveryState
from apps.core.models import AuditEvent, TaskDelivery


class AuditEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditEvent

    actor = None
    actor_label = factory.Sequence(lambda n: f"person-{n}")
    action = "create"
    source = AuditEvent.Source.API
    object_repr = factory.Sequence(lambda n: f"object {n}")
    remote_addr = "127.0.0.1"


class TaskDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TaskDelivery

    task_id = factory.Sequence(lambda n: f"task-{n:06d}")
    task_name = "apps.core.tasks.ping"
    queue = "default"
    state = DeliveryState.RUNNING
    deliveries = 1
