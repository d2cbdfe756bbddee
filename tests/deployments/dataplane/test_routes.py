"""The data plane's routes: a deployment's live split read by traffic's rules into plain data (its
sides' versions, limits and loaded placements, the fallback after a rollback), cached in the
process until cleared or expired."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.deployments.dataplane import routes
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.serving.domain.states import PlacementState
from apps.serving.inference.aio import Target
from tests.deployments.factories import DeploymentFactory
from tests.deployments.live import placement_of, release_on, serving
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db(transaction=True)


def route(name: str, **options: Any) -> routes.Route | None:
    return async_to_sync(routes.route)(name, **options)


def listed() -> list[routes.Route]:
    return async_to_sync(routes.routes)()


def test_a_route_holds_the_stable_sides_version_limits_and_loaded_placements() -> None:
    deployment, stable, _ = serving(max_concurrency=3, max_queue=7, wake_timeout_s=20)
    version = stable.model_version
    version.metadata = {"context_length": 2048}
    version.save(update_fields=["metadata"])
    placement = placement_of(stable)

    found = route(deployment.name)

    assert found is not None
    assert (found.deployment_id, found.name, found.state) == (deployment.pk, deployment.name, "active")
    assert (found.max_model_len, found.wake_timeout_s) == (2048, 20)
    assert found.created == int(deployment.created_at.timestamp())
    assert found.owned_by == "moc"
    assert (found.canary, found.canary_percent, found.fallback) == (None, 0, None)
    side = found.stable
    assert side is not None
    assert (side.release_id, side.version_id, side.version_label) == (stable.pk, version.pk, str(version))
    assert (side.kind, side.format, side.loading) == ("causal-lm", "hf", False)
    assert (side.limits.concurrency, side.limits.queue) == (3, 7)
    assert side.targets == (Target(placement.pk, placement.device.queue, str(placement.device)),)


def test_a_release_rolling_out_with_a_share_is_the_canary_side() -> None:
    deployment, _, canary = serving(canary_percent=25)
    assert canary is not None

    found = route(deployment.name)

    assert found is not None
    assert found.canary is not None
    assert (found.canary.release_id, found.canary_percent) == (canary.pk, 25)


def test_a_replica_on_its_way_marks_its_side_loading_and_not_loaded(make_user: Any) -> None:
    deployment, stable, _ = serving()
    placement_of(stable).delete()
    stable.placements.add(PlacementFactory(version=stable.model_version, state=PlacementState.LOADING))

    found = route(deployment.name)

    assert found is not None
    assert found.stable is not None
    assert (found.stable.targets, found.stable.loading) == ((), True)


def test_the_release_rolled_back_from_stable_is_the_fallback_while_it_has_a_replica() -> None:
    deployment, stable, _ = serving()
    rolled_back = release_on(
        deployment, state=ReleaseState.ROLLED_BACK, previous_release=stable, promoted_at=timezone.now()
    )

    found = route(deployment.name)

    assert found is not None
    assert found.fallback is not None
    assert found.fallback.release_id == rolled_back.pk
    placement_of(rolled_back).delete()
    assert route(deployment.name, fresh=True).fallback is None  # type: ignore[union-attr]


def test_a_release_rolled_back_before_it_was_promoted_is_no_fallback() -> None:
    deployment, stable, _ = serving()
    release_on(deployment, state=ReleaseState.ROLLED_BACK, previous_release=stable)

    assert route(deployment.name).fallback is None  # type: ignore[union-attr]


def test_an_unknown_name_is_none_and_cached_too() -> None:
    assert route("nobody") is None

    with CaptureQueriesContext(connection) as queries:
        assert route("nobody") is None

    assert queries.captured_queries == []


@pytest.mark.parametrize("name", ["Chat", "x" * 64, "a" * 2_000_000, "chat-", "a--b", "", "1st", "chat prod"])
def test_a_name_no_deployment_may_have_is_unknown_at_once_costing_no_query_nor_memory(name: str) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert route(name) is None

    assert queries.captured_queries == []
    assert name not in routes._by_name


def test_misses_at_once_for_a_name_share_one_read() -> None:
    deployment, _, _ = serving()

    async def at_once() -> list[routes.Route | None]:
        return await asyncio.gather(*(routes.route(deployment.name) for _ in range(8)))

    with CaptureQueriesContext(connection) as queries:
        found = async_to_sync(at_once)()

    assert {r.deployment_id if r else None for r in found} == {deployment.pk}
    assert len(found) == 8
    assert 0 < len(queries.captured_queries) <= 5  # one read (_read: five queries), not eight


def test_a_fresh_read_does_not_join_a_read_begun_before_it() -> None:
    deployment, _, _ = serving()

    async def stale_then_fresh() -> tuple[routes.Route | None, routes.Route | None]:
        first = asyncio.ensure_future(routes.route(deployment.name))
        await asyncio.sleep(0)  # the first read is in flight
        fresh = routes.route(deployment.name, fresh=True)
        return await first, await fresh

    with CaptureQueriesContext(connection) as queries:
        first, fresh = async_to_sync(stale_then_fresh)()

    assert first is not None
    assert fresh is not None
    assert first is not fresh  # two reads
    assert len(queries.captured_queries) > 5


def test_a_request_that_goes_away_leaves_the_shared_read_to_the_others() -> None:
    deployment, _, _ = serving()

    async def one_leaves() -> routes.Route | None:
        gone = asyncio.ensure_future(routes.route(deployment.name))
        staying = asyncio.ensure_future(routes.route(deployment.name))
        await asyncio.sleep(0)
        gone.cancel()
        return await staying

    found = async_to_sync(one_leaves)()

    assert found is not None
    assert found.deployment_id == deployment.pk
    assert deployment.name in routes._by_name  # cached by the read the one gone had begun


def test_a_cached_route_costs_no_query_until_cleared() -> None:
    deployment, _, _ = serving()
    route(deployment.name)
    with CaptureQueriesContext(connection) as queries:
        route(deployment.name)
    assert queries.captured_queries == []

    deployment.wake_timeout_s = 45
    deployment.save(update_fields=["wake_timeout_s"])
    assert route(deployment.name).wake_timeout_s == 60  # type: ignore[union-attr]  # still cached
    routes.clear()

    assert route(deployment.name).wake_timeout_s == 45  # type: ignore[union-attr]


def test_a_cached_route_is_read_again_once_it_expires(settings: Any) -> None:
    settings.MOC_DATAPLANE_CACHE_S = 0.0
    deployment, _, _ = serving()
    route(deployment.name)

    type(deployment).objects.filter(pk=deployment.pk).update(state=DeploymentState.PAUSED)

    assert route(deployment.name).state == "paused"  # type: ignore[union-attr]


def test_the_listing_leaves_out_retired_deployments_and_reads_five_queries_however_many() -> None:
    names = {serving()[0].name for _ in range(3)}
    DeploymentFactory(state=DeploymentState.RETIRED)
    draft = DeploymentFactory(state=DeploymentState.DRAFT)

    with CaptureQueriesContext(connection) as queries:
        found = listed()

    assert {r.name for r in found} == names | {draft.name}
    assert len(queries.captured_queries) <= 5
