"""Upgrading a database made before scale to zero (deployments at 0005): its deployments keep
their replicas loaded (pinned), while new ones are on demand."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.deployments.models import Deployment

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("deployments", "0005_on_demand_grants_minutes")


def test_a_deployment_made_before_scale_to_zero_is_pinned_after_the_upgrade() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps.get_model("deployments", "Deployment")
    made = old.objects.create(name="from-before")
    assert not made.pinned  # 0005's default, which made it on demand

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert Deployment.objects.get(pk=made.pk).pinned
    assert not Deployment.objects.create(name="made-after").pinned
