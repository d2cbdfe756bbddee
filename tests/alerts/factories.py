"""factory_boy factories for alerting."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone

from apps.alerts.domain.rules import alert_labels, fingerprint
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert, AlertRule, Delivery, InhibitRule, NotificationChannel, Silence


class AlertRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlertRule

    name = factory.Sequence(lambda n: f"GpuHot{n}")
    metric = "DCGM_FI_DEV_GPU_TEMP"
    op = ">"
    threshold = 85.0
    for_seconds = 60
    severity = "warning"
    matchers = factory.LazyFunction(list)
    enabled = True


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    class Params:
        series = factory.LazyFunction(lambda: {"node": "gpu-01"})

    rule = factory.SubFactory(AlertRuleFactory)
    labels = factory.LazyAttribute(lambda o: alert_labels(o.rule.name, o.rule.severity, o.series))
    fingerprint = factory.LazyAttribute(lambda o: fingerprint(o.rule.pk, o.labels))
    state = AlertState.FIRING.value
    value = 91.0
    started_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(minutes=5))
    fired_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(minutes=4))


class SilenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Silence

    matchers = factory.LazyFunction(lambda: [{"label": "node", "op": "=", "value": "gpu-01"}])
    starts_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(minutes=1))
    ends_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(hours=2))
    comment = "maintenance"
    created_by = None


class NotificationChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationChannel

    name = factory.Sequence(lambda n: f"ops-hook-{n}")
    kind = "webhook"
    config = factory.LazyFunction(lambda: {"url": "https://hooks.example.com/moc/secret-token"})
    enabled = True
    send_resolved = True


class InhibitRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InhibitRule

    name = factory.Sequence(lambda n: f"node down mutes devices {n}")
    source_matchers = factory.LazyFunction(lambda: [{"label": "alertname", "op": "=", "value": "NodeDown"}])
    target_matchers = factory.LazyFunction(lambda: [{"label": "device", "op": "=~", "value": ".+"}])
    equal = factory.LazyFunction(lambda: ["node"])


class DeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Delivery

    channel = factory.SubFactory(NotificationChannelFactory)
    group_key = "g"
    status = "delivered"
    firing = 1
    body = "{}"
