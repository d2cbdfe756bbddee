"""Every API failure answers with one JSON body: {"error", "detail", "fields"}."""

from __future__ import annotations

import json
from collections.abc import Callable

import kombu.exceptions
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from apps.core.api.errors import exception_handler
from apps.core.domain.roles import Role
from apps.core.domain.statemachine import InvalidTransition
from apps.core.domain.states import DELIVERY

KEYS = "/api/v1/api-keys/"


@pytest.fixture
def operator_client(client_as: Callable[[Role | None], APIClient]) -> APIClient:
    return client_as(Role.OPERATOR)


def _assert_error_body(body: dict, code: str) -> None:
    assert set(body) == {"error", "detail", "fields"}
    assert body["error"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]


@pytest.mark.django_db
def test_malformed_json_is_a_parse_error(operator_client: APIClient) -> None:
    response = operator_client.post(KEYS, data='{"name": "ci",', content_type="application/json")

    assert response.status_code == 400
    _assert_error_body(response.json(), "parse_error")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"), [({"name": "ci", "role": 123}, "role"), ({"name": [], "role": "viewer"}, "name")]
)
def test_a_field_of_the_wrong_type_is_named_in_fields(
    operator_client: APIClient, payload: dict, field: str
) -> None:
    response = operator_client.post(KEYS, payload)

    assert response.status_code == 400
    body = response.json()
    _assert_error_body(body, "invalid")
    assert list(body["fields"]) == [field]
    assert isinstance(body["fields"][field], list)
    assert body["detail"].startswith(f"{field}: ")


@pytest.mark.django_db
def test_a_missing_field_is_named_in_fields(operator_client: APIClient) -> None:
    body = operator_client.post(KEYS, {"role": "viewer"}).json()

    assert body["fields"] == {"name": ["This field is required."]}


@pytest.mark.django_db
def test_a_body_over_the_limit_is_refused_with_413(operator_client: APIClient, settings: object) -> None:
    settings.MOC_MAX_REQUEST_BYTES = 64

    response = operator_client.post(
        KEYS, data=json.dumps({"name": "x" * 100, "role": "viewer"}), content_type="application/json"
    )

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    body = response.json()
    _assert_error_body(body, "request_too_large")
    assert "limit is 64" in body["detail"]


@pytest.mark.django_db
def test_a_body_at_the_limit_is_accepted(operator_client: APIClient, settings: object) -> None:
    data = json.dumps({"name": "ci", "role": "viewer"})
    settings.MOC_MAX_REQUEST_BYTES = len(data)

    assert operator_client.post(KEYS, data=data, content_type="application/json").status_code == 201


@pytest.mark.django_db
def test_a_non_numeric_content_length_is_a_bad_request(operator_client: APIClient) -> None:
    response = operator_client.post(KEYS, data="{}", content_type="application/json", CONTENT_LENGTH="lots")

    assert response.status_code == 400
    _assert_error_body(response.json(), "bad_request")


@pytest.mark.django_db
def test_an_unknown_object_is_not_found(operator_client: APIClient) -> None:
    response = operator_client.get("/api/v1/audit-events/999999/")

    assert response.status_code == 404
    _assert_error_body(response.json(), "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("role", [None, Role.VIEWER])
def test_an_unknown_api_url_is_a_json_404(
    client_as: Callable[[Role | None], APIClient], role: Role | None
) -> None:
    response = client_as(role).get("/api/v1/nope/")

    assert response.status_code == 404
    body = response.json()
    _assert_error_body(body, "not_found")
    assert "/api/v1/nope/" in body["detail"]


@pytest.mark.django_db
def test_a_user_without_a_role_is_forbidden(make_user: Callable[..., object]) -> None:
    client = APIClient()
    client.force_login(make_user(None))

    response = client.get("/api/v1/audit-events/")

    assert response.status_code == 403
    _assert_error_body(response.json(), "permission_denied")
    assert response.json()["fields"] == {}


@pytest.mark.django_db
def test_a_method_the_endpoint_lacks_is_405(client_as: Callable[[Role | None], APIClient]) -> None:
    response = client_as(Role.VIEWER).delete("/api/v1/me/")

    assert response.status_code == 405
    body = response.json()
    _assert_error_body(body, "method_not_allowed")
    assert "DELETE" in body["detail"]


def test_invalid_transition_maps_to_409() -> None:
    exc = InvalidTransition(DELIVERY.name, "succeeded", "running", DELIVERY.allowed("succeeded"))

    response = exception_handler(exc, {})

    assert response.status_code == 409
    assert response.data == {
        "error": "invalid_transition",
        "detail": "task delivery cannot go from 'succeeded' to 'running'; "
        "from 'succeeded' it can go to nothing (it is final)",
        "fields": {},
    }


def test_django_validation_error_maps_to_400_with_fields() -> None:
    from django.core.exceptions import ValidationError

    response = exception_handler(ValidationError({"role": "too high"}), {})

    assert response.status_code == 400
    assert response.data == {"error": "invalid", "detail": "role: too high", "fields": {"role": ["too high"]}}


@pytest.mark.parametrize(
    "exc",
    [
        redis.ConnectionError("Error 111 connecting to 10.0.0.7:6379. Connection refused."),
        kombu.exceptions.OperationalError("Error 111 connecting to 10.0.0.7:6379. Connection refused."),
        redis.TimeoutError("Timeout reading from 10.0.0.7:6379"),
    ],
)
def test_redis_or_the_broker_away_is_a_503_with_retry_after_that_hides_the_host(exc: Exception) -> None:
    response = exception_handler(exc, {})

    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert response.data["error"] == "redis_unavailable"
    assert "10.0.0.7" not in response.data["detail"]


def test_unexpected_exceptions_are_left_to_django() -> None:
    assert exception_handler(RuntimeError("boom"), {}) is None


@pytest.mark.parametrize(
    "exc",
    [
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        redis.exceptions.NoScriptError("No matching script. Please use EVAL."),
    ],
)
def test_an_error_redis_answered_is_a_server_error_left_to_django_not_an_outage(exc: Exception) -> None:
    assert exception_handler(exc, {}) is None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
# No example database: it would be written into the checkout, and these examples are cheap to regenerate.
FUZZ = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.django_db
@FUZZ
@given(
    body=st.binary(max_size=200),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "text/plain",
        ]
    ),
)
def test_garbage_bodies_never_cause_a_server_error(
    operator_client: APIClient, body: bytes, content_type: str
) -> None:
    response = operator_client.post(KEYS, data=body, content_type=content_type)

    assert response.status_code < 500, response.content


@pytest.mark.django_db
@FUZZ
@given(value=JSON_VALUES)
def test_any_json_value_never_causes_a_server_error(operator_client: APIClient, value: object) -> None:
    response = operator_client.post(KEYS, data=json.dumps(value), content_type="application/json")

    assert response.status_code < 500, response.content


@pytest.mark.django_db
@FUZZ
@given(
    payload=st.fixed_dictionaries(
        {"name": JSON_VALUES, "role": JSON_VALUES | st.sampled_from(["viewer", "operator", "admin"])},
        optional={"expiry_date": JSON_VALUES},
    )
)
def test_any_field_values_never_cause_a_server_error(operator_client: APIClient, payload: dict) -> None:
    response = operator_client.post(KEYS, data=json.dumps(payload), content_type="application/json")

    assert response.status_code < 500, response.content
