"""A bounded schemathesis run over every operation of the API, as an admin's API key.

Each operation gets a few generated requests (fixed seed) against the WSGI application in
this process, on a database holding a row of each kind, the nullable links left empty: no
answer may be a 5xx, and every documented answer must match the schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from apps.core import services
from apps.core.domain.roles import Role
from apps.models.models import ScanRun
from tests.alerts.factories import AlertFactory, SilenceFactory
from tests.core.factories import AuditEventFactory, TaskDeliveryFactory
from tests.deployments.factories import CheckResultFactory
from tests.fleet.factories import TelemetrySampleFactory
from tests.goals.factories import GoalEventFactory
from tests.jobs.factories import DatasetFactory, JobEventFactory
from tests.models.factories import ModelAliasFactory, ModelFileFactory, ModelVersionFactory
from tests.serving.factories import PlacementFactory

EXAMPLES_PER_OPERATION = 4


def _openapi() -> dict[str, Any]:
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(_openapi())
schema.app = WSGIHandler()
schema.config.generation.update(max_examples=EXAMPLES_PER_OPERATION, deterministic=True)
# Generated requests only: the coverage phase adds dozens of boundary cases per operation.
schema.config.phases.update(phases=["examples", "fuzzing"])


@pytest.fixture
def admin_key(make_user: Callable[..., object]) -> str:
    _, secret = services.api_key_create(
        owner=make_user(Role.ADMIN), name="fuzz", role=Role.ADMIN, acting_role=Role.ADMIN
    )
    return secret


@pytest.fixture
def connections_kept() -> Iterator[None]:
    """Each request through the WSGI handler would close the test's database connection, and its
    transaction with it; Django's own test client turns that off the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def rows() -> None:
    """A row of each kind the API lists, with every nullable link empty where one can be."""
    base = ModelVersionFactory(model__owner=None, parent=None)
    ModelVersionFactory(model=base.model, parent=base)
    ModelFileFactory(version=base)
    ModelAliasFactory(version=base)
    ScanRun.objects.create(roots=["/srv/models"], requested_by=None)
    PlacementFactory(version=base)
    TelemetrySampleFactory()
    JobEventFactory()
    DatasetFactory()
    CheckResultFactory()
    GoalEventFactory()
    AlertFactory()
    SilenceFactory()
    AuditEventFactory()
    TaskDeliveryFactory()


@pytest.mark.django_db
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@schema.parametrize()
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, admin_key: str, connections_kept: None, rows: None
) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin_key}"},
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
