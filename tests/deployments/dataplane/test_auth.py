"""The data plane's callers: keys checked as the REST API checks them, then cached in the process
until they change; what a key may do (infer, which deployments); failures throttled by address."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core import roles, services
from apps.core.api import throttling
from apps.core.domain.roles import Role
from apps.core.models import ApiKey
from apps.deployments import services as deployments
from apps.deployments.dataplane import auth
from apps.deployments.domain.openai import ApiError
from apps.deployments.models import KeyGrant
from tests.deployments.factories import DeploymentFactory

pytestmark = pytest.mark.django_db(transaction=True)

MakeKey = Callable[..., tuple[ApiKey, str]]
PEER = ("203.0.113.9", 4242)


def caller(header: str, *, peer: tuple[str, int] = PEER) -> auth.Caller:
    return async_to_sync(auth.authenticate)({"authorization": header}, peer)


def refused(header: str, *, peer: tuple[str, int] = PEER) -> ApiError:
    with pytest.raises(ApiError) as caught:
        caller(header, peer=peer)
    return caught.value


def test_an_operators_key_may_infer_on_every_deployment(make_key: MakeKey) -> None:
    api_key, secret = make_key(Role.OPERATOR)

    found = caller(f"Bearer {secret}")

    assert found == auth.Caller(api_key.pk, api_key.prefix, api_key.owner_id, True, None)
    assert found.may_call(12345)


def test_the_api_key_scheme_is_accepted_too(make_key: MakeKey) -> None:
    api_key, secret = make_key(Role.OPERATOR)

    assert caller(f"Api-Key {secret}").key_id == api_key.pk


def test_a_viewers_key_may_not_infer(make_key: MakeKey) -> None:
    _, secret = make_key(Role.VIEWER)

    assert caller(f"Bearer {secret}").may_infer is False


def test_an_operator_key_of_a_demoted_owner_may_not_infer(make_key: MakeKey) -> None:
    api_key, secret = make_key(Role.OPERATOR)
    roles.set_role(api_key.owner, Role.VIEWER)

    assert caller(f"Bearer {secret}").may_infer is False


def test_a_key_with_grants_may_call_only_those_deployments(make_key: MakeKey) -> None:
    granted, other = DeploymentFactory(), DeploymentFactory()
    _, secret = make_key(Role.OPERATOR, grants=[granted])

    found = caller(f"Bearer {secret}")

    assert found.deployment_ids == frozenset({granted.pk})
    assert found.may_call(granted.pk)
    assert not found.may_call(other.pk)


def test_a_key_whose_grants_were_all_taken_back_may_call_none(make_key: MakeKey) -> None:
    granted = DeploymentFactory()
    api_key, secret = make_key(Role.OPERATOR, grants=[granted])
    assert caller(f"Bearer {secret}").may_call(granted.pk)

    deployments.key_grant_delete(grant=KeyGrant.objects.get(key=api_key))
    auth.clear()  # as the change's message does in every process

    found = caller(f"Bearer {secret}")
    assert found.deployment_ids == frozenset()
    assert not found.may_call(granted.pk)
    assert not found.may_call(DeploymentFactory().pk)


def test_a_key_whose_granted_deployment_was_deleted_may_call_none(make_key: MakeKey) -> None:
    granted = DeploymentFactory()
    _, secret = make_key(Role.OPERATOR, grants=[granted])

    granted.delete()  # its grants go with it
    auth.clear()

    assert caller(f"Bearer {secret}").deployment_ids == frozenset()


def test_a_key_once_cleared_by_an_admin_may_call_every_deployment_again(make_key: MakeKey) -> None:
    granted = DeploymentFactory()
    api_key, secret = make_key(Role.OPERATOR, grants=[granted])
    deployments.key_grant_delete(grant=KeyGrant.objects.get(key=api_key))
    auth.clear()
    assert not caller(f"Bearer {secret}").may_call(granted.pk)

    api_key.refresh_from_db()
    api_key.limited = False
    api_key.save(update_fields=["limited"])  # as the core admin saves it
    auth.clear()

    assert caller(f"Bearer {secret}").deployment_ids is None


def test_a_grant_made_around_the_service_limits_the_key_too(make_key: MakeKey) -> None:
    api_key, secret = make_key(Role.OPERATOR)
    granted = DeploymentFactory()
    grant = KeyGrant.objects.create(key=api_key, deployment=granted)  # as the deployments admin's inline

    assert caller(f"Bearer {secret}").deployment_ids == frozenset({granted.pk})
    api_key.refresh_from_db()
    assert api_key.limited
    grant.delete()  # as the admin's delete: the key stays limited, to nothing
    auth.clear()  # as the change's message does in every process
    assert caller(f"Bearer {secret}").deployment_ids == frozenset()


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Token abc"])
def test_a_request_without_a_key_is_401(header: str) -> None:
    err = refused(header)

    assert err.status == 401
    assert "Authorization: Bearer" in err.message


def test_an_unknown_key_is_401(make_key: MakeKey) -> None:
    _, secret = make_key(Role.OPERATOR)
    prefix, _, rest = secret.partition(".")

    err = refused(f"Bearer {prefix}.{rest[::-1]}")

    assert (err.status, err.message, err.code) == (401, "Unknown API key.", "invalid_api_key")


def test_a_revoked_key_is_401_once_the_cache_hears_of_it(make_key: MakeKey) -> None:
    api_key, secret = make_key(Role.OPERATOR)
    caller(f"Bearer {secret}")

    services.api_key_revoke(api_key=api_key)
    auth.clear()  # what the invalidation listener does on hearing "keys"

    err = refused(f"Bearer {secret}")
    assert (err.status, err.message) == (401, "This API key was revoked.")


def test_a_cached_key_is_checked_again_once_its_entry_expires(make_key: MakeKey, settings: Any) -> None:
    settings.MOC_DATAPLANE_CACHE_S = 0.0
    api_key, secret = make_key(Role.OPERATOR)
    caller(f"Bearer {secret}")

    ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)  # no signal: only expiry can tell

    assert refused(f"Bearer {secret}").status == 401


def test_a_known_key_costs_no_query_while_cached(make_key: MakeKey) -> None:
    _, secret = make_key(Role.OPERATOR)
    caller(f"Bearer {secret}")

    with CaptureQueriesContext(connection) as queries:
        caller(f"Bearer {secret}")

    assert queries.captured_queries == []


def test_a_keys_use_is_noted_once_a_minute(make_key: MakeKey) -> None:
    api_key, secret = make_key(Role.OPERATOR)

    async def twice() -> None:
        await auth.authenticate({"authorization": f"Bearer {secret}"}, PEER)
        await auth.authenticate({"authorization": f"Bearer {secret}"}, PEER)
        await _written()

    async_to_sync(twice)()

    api_key.refresh_from_db()
    first = api_key.last_used_at
    assert first is not None
    auth.clear()
    async_to_sync(twice)()
    api_key.refresh_from_db()
    assert api_key.last_used_at == first


async def _written() -> None:
    await asyncio.gather(*auth._tasks)


@pytest.fixture
def three_failures_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRF reads the rates into the class when it is defined, so they are patched there."""
    monkeypatch.setattr(throttling.KeyFailureThrottle, "THROTTLE_RATES", {"api_key_failures": "3/min"})


@pytest.mark.usefixtures("three_failures_a_minute")
def test_failed_keys_are_throttled_per_address_with_retry_after(make_key: MakeKey) -> None:
    _, secret = make_key(Role.OPERATOR)
    for _ in range(3):
        assert refused("Bearer nope.nope").status == 401

    err = refused("Bearer nope.nope")

    assert err.status == 429
    assert 0 < (err.retry_after_s or 0) <= 60
    assert refused("Bearer nope.nope", peer=("203.0.113.10", 1)).status == 401
    assert caller(f"Bearer {secret}").may_infer  # a valid key is never refused for others' failures
