"""What changes which data-plane cache: writes publish "keys" or "routes" once they commit, and a
process's listener clears the matching cache when it hears them (real Redis pub/sub)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from apps.core import roles, services
from apps.core.domain.roles import Role
from apps.core.models import ApiKey
from apps.core.redis_clients import redis_client
from apps.core.transitions import transition
from apps.deployments.dataplane import auth, invalidation, routes
from apps.deployments.domain.states import DEPLOYMENT, DeploymentState
from apps.deployments.models import KeyGrant
from tests.deployments.factories import DeploymentFactory
from tests.deployments.live import placement_of, serving

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard() -> Iterator[Callable[[], list[str]]]:
    """What the data plane's channel carried so far (a real subscriber)."""
    pubsub = redis_client(timeout=5).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(invalidation.CHANNEL)

    def messages() -> list[str]:
        """Those that came within 0.3 s, or since the last call."""
        got, deadline = [], time.monotonic() + 0.3
        while (left := deadline - time.monotonic()) > 0:
            if (message := pubsub.get_message(timeout=left)) is not None:
                got.append(message["data"].decode())
        return got

    yield messages
    pubsub.close()


def test_revoking_a_key_publishes_keys_once_it_commits(
    make_key: Callable[..., tuple[ApiKey, str]], heard: Callable[[], list[str]]
) -> None:
    api_key, _ = make_key(Role.OPERATOR)
    heard()

    with transaction.atomic():
        services.api_key_revoke(api_key=api_key)
        assert heard() == []

    assert invalidation.KEYS in heard()


@pytest.mark.parametrize("change", ["grant", "role", "login"])
def test_grants_and_roles_publish_keys_and_a_login_does_not(
    change: str, make_key: Callable[..., tuple[ApiKey, str]], heard: Callable[[], list[str]]
) -> None:
    api_key, _ = make_key(Role.OPERATOR)
    deployment = DeploymentFactory()
    heard()

    if change == "grant":
        KeyGrant.objects.create(key=api_key, deployment=deployment)
    elif change == "role":
        roles.set_role(api_key.owner, Role.VIEWER)
    else:
        api_key.owner.last_login = api_key.created
        api_key.owner.save(update_fields=["last_login"])

    assert (invalidation.KEYS in heard()) is (change != "login")


@pytest.mark.parametrize("change", ["transition", "traffic", "placement"])
def test_deployments_releases_and_their_placements_publish_routes(
    change: str, heard: Callable[[], list[str]]
) -> None:
    deployment, stable, _ = serving()
    heard()

    if change == "transition":  # a conditional UPDATE: no post_save
        assert transition(deployment, DeploymentState.PAUSED, machine=DEPLOYMENT)
    elif change == "traffic":
        stable.traffic_percent = 90
        stable.save(update_fields=["traffic_percent"])
    else:
        stable.placements.remove(placement_of(stable))

    assert heard() == [invalidation.ROUTES]


def test_a_listener_clears_the_cache_it_hears_of(make_key: Callable[..., tuple[ApiKey, str]]) -> None:
    _, secret = make_key(Role.OPERATOR)
    deployment, _, _ = serving()

    async def go() -> tuple[bool, bool, bool, bool]:
        invalidation.listen()
        await _subscribed()
        await auth.authenticate({"authorization": f"Bearer {secret}"}, None)
        await routes.route(deployment.name)
        redis_client().publish(invalidation.CHANNEL, invalidation.ROUTES)
        await _until(lambda: not routes._by_name)
        keys_kept = bool(auth._keys)
        redis_client().publish(invalidation.CHANNEL, invalidation.KEYS)
        await _until(lambda: not auth._keys)
        return keys_kept, not routes._by_name, not auth._keys, True

    assert async_to_sync(go)() == (True, True, True, True)


def test_a_listener_that_lost_redis_subscribes_again_and_forgets_all(
    make_key: Callable[..., tuple[ApiKey, str]],
) -> None:
    _, secret = make_key(Role.OPERATOR)

    async def go() -> bool:
        invalidation.listen()
        await _subscribed()
        await auth.authenticate({"authorization": f"Bearer {secret}"}, None)
        redis_client().client_kill_filter(_type="pubsub")
        await _until(lambda: not auth._keys)  # forgotten, for what it may have missed
        await _subscribed()
        await auth.authenticate({"authorization": f"Bearer {secret}"}, None)
        redis_client().publish(invalidation.CHANNEL, invalidation.KEYS)
        await _until(lambda: not auth._keys)
        return True

    assert async_to_sync(go)()


async def _subscribed() -> None:
    await _until(lambda: redis_client().pubsub_numsub(invalidation.CHANNEL)[0][1] > 0)


async def _until(check: Callable[[], Any], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)
