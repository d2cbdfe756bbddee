"""Scale to zero and wake-on-request with the database, no worker: an unpinned deployment's stable
replicas go when idle (serving's keep-alive), the engine does not bring them back, and a request
does (wake), once however many ask at once, through /v1/ or the REST deployment endpoint. While a
release is open, the stable's replicas stay loaded."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import close_old_connections, connection
from django.urls import reverse
from django.utils import timezone

from apps.core import services as core_services
from apps.core.domain.roles import Role
from apps.deployments import services, traffic
from apps.deployments.dataplane import routes, waking
from apps.deployments.dataplane.routes import Route
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import Deployment, KeyGrant, Release
from apps.deployments.rollout import due_release_ids, release_abort, release_promote, tick
from apps.deployments.wake import RECREATING_RETRY_S, REFUSED_RETRY_S, Waking, readiness, wake
from apps.serving import placing
from apps.serving import services as serving
from apps.serving.domain.states import PlacementState
from apps.serving.inference.refusals import Refused
from apps.serving.models import Placement
from tests.deployments.factories import DeploymentFactory, ServableVersionFactory
from tests.deployments.rollout_steps import loaded, through_verification, unloaded
from tests.fleet.factories import GIB, DeviceFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db
P = PlacementState


@pytest.fixture(autouse=True)
def _no_broker(dispatched: list) -> None:
    """No worker runs: what MOC sends (loads, unloads, verification runs, ticks) is only recorded."""


@pytest.fixture
def device() -> Any:
    return DeviceFactory()


def promoted(**fields: Any) -> tuple[Deployment, Release]:
    deployment = DeploymentFactory(**fields)
    release = services.release_create(deployment=deployment, model_version=ServableVersionFactory())
    through_verification(release)
    deployment.refresh_from_db()
    assert deployment.current_release == release
    return deployment, release


def replicas_of(release: Release) -> list[tuple[str, bool, int]]:
    """(state, pinned, keep-alive) of each of its placements, oldest first."""
    return list(
        Placement.objects.filter(releases=release)
        .order_by("pk")
        .values_list("state", "pinned", "keep_alive_s")
    )


def idle_for(release: Release, seconds: float) -> None:
    Placement.objects.filter(releases=release).update(
        last_used_at=timezone.now() - dt.timedelta(seconds=seconds)
    )


def asleep(**fields: Any) -> tuple[Deployment, Release]:
    """A promoted, unpinned deployment whose replica went after its keep-alive."""
    deployment, release = promoted(keep_alive_s=60, **fields)
    idle_for(release, 61)
    assert placing.placements_expire_idle() == 1
    unloaded(release)
    return deployment, release


def woken_notes(release: Release) -> int:
    return release.events.filter(kind="note", message__startswith="woken by a request").count()


def test_a_promoted_release_of_an_unpinned_deployment_keeps_its_replicas_unpinned_with_the_keep_alive(
    device: Any,
) -> None:
    _, release = promoted(keep_alive_s=120)

    assert replicas_of(release) == [(P.LOADED, False, 120)]


def test_without_its_own_keep_alive_a_deployment_takes_the_setting(device: Any, settings: Any) -> None:
    settings.MOC_DEPLOYMENT_KEEP_ALIVE_S = 777

    _, release = promoted()

    assert replicas_of(release) == [(P.LOADED, False, 777)]


def test_a_release_rolling_out_keeps_its_replicas_pinned(device: Any) -> None:
    deployment = DeploymentFactory(keep_alive_s=120)
    release = services.release_create(deployment=deployment, model_version=ServableVersionFactory())

    tick(release_id=release.pk)
    loaded(release)
    tick(release_id=release.pk)  # verifying

    assert [(state, pinned) for state, pinned, _ in replicas_of(release)] == [(P.LOADED, True)]


def test_a_pinned_deployment_keeps_its_replicas_pinned_and_loaded(device: Any) -> None:
    _, release = promoted(pinned=True, keep_alive_s=60)
    idle_for(release, 3600)

    assert placing.placements_expire_idle() == 0
    assert [(state, pinned) for state, pinned, _ in replicas_of(release)] == [(P.LOADED, True)]


def test_idle_replicas_of_an_unpinned_deployment_are_unloaded_and_the_engine_leaves_them_unloaded(
    device: Any,
) -> None:
    deployment, release = promoted(keep_alive_s=60)
    idle_for(release, 30)
    assert placing.placements_expire_idle() == 0  # not idle long enough yet

    idle_for(release, 61)
    assert placing.placements_expire_idle() == 1
    unloaded(release)

    assert release.pk not in due_release_ids()
    tick(release_id=release.pk)
    assert replicas_of(release) == [(P.UNLOADED, False, 60)]
    assert readiness(release) == "asleep"


def test_the_engine_restores_a_pinned_deployments_lost_replicas(device: Any) -> None:
    _, release = promoted(pinned=True)
    for placement in Placement.objects.filter(releases=release):
        placing.placement_unload(placement=placement, reason="by hand")
    unloaded(release)

    assert release.pk in due_release_ids()
    tick(release_id=release.pk)
    assert [state for state, _, _ in replicas_of(release)] == [P.UNLOADED, P.REQUESTED]


def test_pinning_a_deployment_pins_its_stable_replicas_at_once_and_unpinning_unpins_them(device: Any) -> None:
    deployment, release = promoted(keep_alive_s=120)

    services.deployment_update(deployment=deployment, pinned=True)
    assert [(state, pinned) for state, pinned, _ in replicas_of(release)] == [(P.LOADED, True)]

    services.deployment_update(deployment=deployment, pinned=False, keep_alive_s=30)
    assert replicas_of(release) == [(P.LOADED, False, 30)]


def test_unpinning_leaves_a_replica_another_pinned_deployment_serves_pinned(device: Any) -> None:
    _, release = promoted(pinned=True)
    other = DeploymentFactory(pinned=True, registered_model=release.model_version.model)
    shared = services.release_create(deployment=other, model_version=release.model_version)
    through_verification(shared)
    assert replicas_of(shared) == replicas_of(release)  # the scheduler handed back the same one

    services.deployment_update(deployment=release.deployment, pinned=False)

    assert [(state, pinned) for state, pinned, _ in replicas_of(release)] == [(P.LOADED, True)]


def test_a_wake_loads_an_asleep_deployment_once_however_many_ask(device: Any) -> None:
    deployment, release = asleep(replicas=1)

    first, second = wake(deployment.pk), wake(deployment.pk)

    assert (first, second) == (Waking("loading"), Waking("loading"))
    assert [(state, pinned, keep) for state, pinned, keep in replicas_of(release)] == [
        (P.UNLOADED, False, 60),
        (P.REQUESTED, False, 60),  # on demand again: it goes when idle
    ]
    assert woken_notes(release) == 1
    assert readiness(release) == "loading"
    loaded(release)
    assert wake(deployment.pk) == Waking("loaded")
    assert woken_notes(release) == 1


def test_a_wake_with_nothing_that_fits_is_refused_with_the_schedulers_reason() -> None:
    DeviceFactory(capacity_bytes=2 * GIB)
    deployment, release = asleep()
    # Room taken meanwhile by a pinned placement the scheduler may not evict.
    PlacementFactory(
        device=Placement.objects.get(releases=release).device,
        state=P.LOADED,
        pinned=True,
        reserved_bytes=2 * GIB,
    )

    refused = wake(deployment.pk)

    assert refused.state == "refused"
    assert refused.retry_after_s == REFUSED_RETRY_S
    assert refused.reason.startswith(f"deployment {deployment.name} is asleep and cannot be woken now: ")
    assert "cannot be placed: needs 1.0 GiB" in refused.reason
    assert woken_notes(release) == 0


@pytest.mark.parametrize(
    ("state", "says"),
    [(DeploymentState.PAUSED, "is paused"), (DeploymentState.RETIRED, "is retired")],
)
def test_a_paused_or_retired_deployment_is_not_woken(device: Any, state: str, says: str) -> None:
    deployment, release = asleep()
    Deployment.objects.filter(pk=deployment.pk).update(state=state)

    refused = wake(deployment.pk)

    assert (refused.state, refused.retry_after_s) == ("refused", None)
    assert says in refused.reason
    assert [state for state, _, _ in replicas_of(release)] == [P.UNLOADED]


def test_a_deployment_with_no_live_release_is_not_woken() -> None:
    refused = wake(DeploymentFactory().pk)

    assert refused.state == "refused"
    assert refused.reason.endswith("no release is live yet")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_wakes_at_once_in_several_threads_share_one_load(device: Any) -> None:
    deployment, release = asleep()
    barrier = threading.Barrier(4)
    found: list[Waking] = []
    errors: list[BaseException] = []

    def waker() -> None:
        try:
            barrier.wait(10)
            found.append(wake(deployment.pk))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=waker) for _ in range(4)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert time.monotonic() - began < 30
    assert found == [Waking("loading")] * 4
    assert [state for state, _, _ in replicas_of(release)] == [P.UNLOADED, P.REQUESTED]
    assert woken_notes(release) == 1


# ---- the deployment page -----------------------------------------------------------------------


def detail_html(client_as: Any, name: str, role: Role = Role.VIEWER) -> str:
    response = client_as(role).get(reverse("deployments:detail", args=[name]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_says_an_unpinned_deployment_is_loaded_then_asleep_then_loading(
    client_as: Any, device: Any
) -> None:
    deployment, release = promoted(keep_alive_s=90)
    html = detail_html(client_as, deployment.name)
    assert 'id="serving-state" data-state="loaded"' in html
    assert "scales to zero after 90 s idle" in html

    idle_for(release, 91)
    placing.placements_expire_idle()
    unloaded(release)
    assert "scaled to zero; wakes on the next request" in detail_html(client_as, deployment.name)

    wake(deployment.pk)
    assert 'id="serving-state" data-state="loading"' in detail_html(client_as, deployment.name)


def test_the_page_says_a_pinned_deployment_stays_loaded(client_as: Any, device: Any) -> None:
    deployment, _ = promoted(pinned=True)

    html = detail_html(client_as, deployment.name)

    assert "pinned: the stable release stays loaded while idle" in html
    assert "wakes on the next request" not in html


def test_the_page_lists_the_keys_that_may_call_it(client_as: Any, make_user: Any) -> None:
    deployment = DeploymentFactory(name="chat")
    owner = make_user(Role.OPERATOR, "ci-bot")
    key, _ = core_services.api_key_create(
        owner=owner, name="nightly", role=Role.OPERATOR, acting_role=Role.OPERATOR
    )
    assert "No key is limited to this deployment" in detail_html(client_as, "chat")

    KeyGrant.objects.create(key=key, deployment=deployment)

    section = detail_html(client_as, "chat").split('id="key-grants"')[1].split("</section>")[0]
    assert f"<code>{key.prefix}</code> nightly" in section
    assert "ci-bot" in section


# ---- the data plane's wait (until_loaded), with the database in its own thread -------------------


def route_of(deployment: Deployment) -> Route:
    found = asyncio.run(routes.route(deployment.name, fresh=True))
    assert found is not None
    assert found.stable is not None
    assert found.stable.targets == ()  # asleep
    return found


@pytest.mark.django_db(transaction=True)
def test_requests_waiting_at_once_share_one_wake_and_get_the_loaded_route(device: Any) -> None:
    deployment, release = asleep()
    route = route_of(deployment)

    async def requests() -> list[Route]:
        first = asyncio.create_task(waking.until_loaded(route))
        second = asyncio.create_task(waking.until_loaded(route))
        await asyncio.sleep(0.5)
        assert not first.done()
        assert not second.done()
        await database_sync_to_async(loaded)(release)
        return await asyncio.gather(first, second)

    first, second = asyncio.run(requests())

    assert first is second
    assert first.stable is not None
    assert len(first.stable.targets) == 1
    assert [state for state, _, _ in replicas_of(release)] == [P.UNLOADED, P.LOADED]
    assert woken_notes(release) == 1


@pytest.mark.django_db(transaction=True)
def test_a_wake_leaves_the_processs_database_thread_free(
    device: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment, release = asleep()
    route = route_of(deployment)
    going_on = threading.Event()
    woken_in: list[int] = []

    def slow_wake(deployment_id: int) -> Waking:  # the real wake, held up midway
        woken_in.append(threading.get_ident())
        assert going_on.wait(5)
        return wake(deployment_id)

    monkeypatch.setattr(waking, "wake", slow_wake)

    async def request() -> Route:
        waiting = asyncio.create_task(waking.until_loaded(route))
        await asyncio.sleep(0.2)
        # While the wake is held up, a key or route miss still reads the database at once.
        assert await asyncio.wait_for(database_sync_to_async(Deployment.objects.count)(), 2) == 1
        going_on.set()
        await asyncio.sleep(0.3)
        await database_sync_to_async(loaded)(release)
        return await waiting

    answered = asyncio.run(request())

    assert answered.stable is not None
    assert answered.stable.targets
    assert len(woken_in) == 1


@pytest.mark.django_db(transaction=True)
def test_a_request_that_goes_away_leaves_the_wait_to_the_others(device: Any) -> None:
    deployment, release = asleep()
    route = route_of(deployment)

    async def requests() -> Route:
        gone = asyncio.create_task(waking.until_loaded(route))
        staying = asyncio.create_task(waking.until_loaded(route))
        await asyncio.sleep(0.3)
        gone.cancel()
        await asyncio.sleep(0.3)
        assert not staying.done()
        await database_sync_to_async(loaded)(release)
        return await staying

    answered = asyncio.run(requests())

    assert answered.stable is not None
    assert answered.stable.targets


@pytest.mark.django_db(transaction=True)
def test_a_wait_with_nothing_that_fits_is_refused_503_with_the_schedulers_reason() -> None:
    DeviceFactory(capacity_bytes=2 * GIB)
    deployment, release = asleep()
    PlacementFactory(
        device=Placement.objects.get(releases=release).device,
        state=P.LOADED,
        pinned=True,
        reserved_bytes=2 * GIB,
    )

    with pytest.raises(Refused) as refused:
        asyncio.run(waking.until_loaded(route_of(deployment)))

    assert (refused.value.status, refused.value.retry_after_s) == (503, REFUSED_RETRY_S)
    assert "cannot be placed: needs 1.0 GiB" in refused.value.reason


@pytest.mark.django_db(transaction=True)
def test_a_wait_past_the_wake_timeout_is_refused_503_still_loading(device: Any) -> None:
    deployment, release = asleep(wake_timeout_s=1)

    began = time.monotonic()
    with pytest.raises(Refused) as refused:
        asyncio.run(waking.until_loaded(route_of(deployment)))

    assert 1 <= time.monotonic() - began < 5
    assert refused.value.status == 503
    assert refused.value.reason == f"deployment {deployment.name} is still loading after 1 s"
    assert refused.value.retry_after_s == waking.STILL_LOADING_RETRY_S
    assert [state for state, _, _ in replicas_of(release)] == [P.UNLOADED, P.REQUESTED]  # it goes on


@pytest.mark.django_db(transaction=True)
def test_a_wait_whose_load_failed_is_refused_at_once(device: Any) -> None:
    deployment, release = asleep(wake_timeout_s=60)
    route = route_of(deployment)

    async def request() -> Route:
        waiting = asyncio.create_task(waking.until_loaded(route))
        await asyncio.sleep(0.3)
        await database_sync_to_async(failed)(release)
        return await waiting

    began = time.monotonic()
    with pytest.raises(Refused) as refused:
        asyncio.run(request())

    assert time.monotonic() - began < 5
    assert "stopped loading with none loaded" in refused.value.reason


def failed(release: Release) -> None:
    for placement in Placement.objects.filter(releases=release, state=P.REQUESTED):
        serving.placement_move(placement=placement, to=P.FAILED, error_class="load_failed", error="broken")


def settings_form_data(client: Any, name: str) -> dict[str, Any]:
    form = client.get(reverse("deployments:settings", args=[name])).context["form"]
    return {field: value for field, value in form.initial.items() if value is not None}


def test_the_settings_page_edits_the_on_demand_settings_and_pins_at_once(client_as: Any, device: Any) -> None:
    deployment, release = promoted()
    client = client_as(Role.OPERATOR)
    data = settings_form_data(client, deployment.name) | {"pinned": "on", "keep_alive_s": "300"}
    data["wake_timeout_s"] = "120"

    response = client.post(reverse("deployments:settings", args=[deployment.name]), data, format="multipart")

    assert response.status_code == 302, response.context["form"].errors
    deployment.refresh_from_db()
    assert (deployment.pinned, deployment.keep_alive_s, deployment.wake_timeout_s) == (True, 300, 120)
    assert [(state, pinned) for state, pinned, _ in replicas_of(release)] == [(P.LOADED, True)]


def test_the_settings_page_shows_a_bad_wake_timeout_beside_its_field(client_as: Any) -> None:
    DeploymentFactory(name="chat")
    client = client_as(Role.OPERATOR)
    data = settings_form_data(client, "chat") | {"wake_timeout_s": "0"}

    response = client.post(reverse("deployments:settings", args=["chat"]), data, format="multipart")

    assert response.status_code == 200
    assert 'id="error-wake_timeout_s"' in response.content.decode()


def test_a_deployment_being_recreated_is_not_woken_back_to_its_old_release(device: Any) -> None:
    deployment, old = asleep()
    release = services.release_create(
        deployment=deployment, model_version=ServableVersionFactory(model=deployment.registered_model)
    )
    tick(release_id=release.pk)  # recreate: loading, the old release's replicas gone

    refused = wake(deployment.pk)

    assert (refused.state, refused.retry_after_s) == ("refused", RECREATING_RETRY_S)
    assert f"release #{release.pk} (loading) answers once it is promoted" in refused.reason
    assert [state for state, _, _ in replicas_of(old)] == [P.UNLOADED]


# ---- a release open on an on-demand deployment keeps its stable loaded --------------------------


def canary_on(deployment: Deployment) -> Release:
    return services.release_create(
        deployment=deployment,
        model_version=ServableVersionFactory(model=deployment.registered_model),
        strategy=Strategy.CANARY,
    )


@pytest.mark.parametrize("ending", ["abort", "cancel"])
def test_the_stable_replicas_stay_loaded_while_a_canary_is_open_and_go_back_to_on_demand_after(
    device: Any, ending: str
) -> None:
    """The stable's replicas unloaded mid-canary sent all traffic to the unverified canary, and its
    analysis had no stable to judge it against."""
    deployment, stable = promoted(keep_alive_s=60)
    assert replicas_of(stable) == [(P.LOADED, False, 60)]

    canary = canary_on(deployment)
    assert replicas_of(stable) == [(P.LOADED, True, 60)]
    if ending == "abort":
        through_verification(canary)
        assert (canary.state, canary.traffic_percent) == (ReleaseState.PROGRESSING, 10)
    idle_for(stable, 3600)
    assert placing.placements_expire_idle() == 0
    assert [state for state, _, _ in replicas_of(stable)] == [P.LOADED]

    if ending == "abort":
        release_abort(release=canary, by=None, reason="enough")
    else:
        services.release_cancel(release=canary)

    assert replicas_of(stable) == [(P.LOADED, False, 60)]
    assert placing.placements_expire_idle() == 1


def test_a_promoted_canary_leaves_its_replicas_on_demand_and_the_old_stable_kept_for_its_window(
    device: Any,
) -> None:
    deployment, stable = promoted(keep_alive_s=60)
    canary = through_verification(canary_on(deployment))

    release_promote(release=canary, by=None, reason="looks fine")

    assert replicas_of(canary) == [(P.LOADED, False, 60)]
    assert [(state, pinned) for state, pinned, _ in replicas_of(stable)] == [(P.LOADED, True)]


def test_a_sleeping_stable_is_woken_when_a_canary_opens_and_loads_pinned_until_it_ends(device: Any) -> None:
    deployment, stable = asleep()

    canary = canary_on(deployment)

    assert [(state, pinned) for state, pinned, _ in replicas_of(stable)] == [
        (P.UNLOADED, False),
        (P.REQUESTED, True),
    ]
    assert woken_notes(stable) == 1
    loaded(stable)
    services.release_cancel(release=canary)
    assert replicas_of(stable)[1] == (P.LOADED, False, 60)


def test_a_stable_that_cannot_be_woken_when_a_canary_opens_says_so_on_its_timeline() -> None:
    DeviceFactory(capacity_bytes=2 * GIB)
    deployment, stable = asleep()
    PlacementFactory(
        device=Placement.objects.get(releases=stable).device,
        state=P.LOADED,
        pinned=True,
        reserved_bytes=2 * GIB,
    )

    canary = canary_on(deployment)

    note = canary.events.get(kind="note").message
    assert note.startswith(f"the stable release #{stable.pk} has no replica loaded and could not be woken: ")
    assert "cannot be placed: needs 1.0 GiB" in note


# ---- the REST deployment endpoint wakes a sleeping deployment too ------------------------------


def rest_infer(client_as: Any, name: str) -> Any:
    return client_as(Role.OPERATOR).post(
        f"/api/v1/deployments/{name}/infer/",
        {"task": "generate", "input": {"prompt": "Once upon a time"}},
        content_type="application/json",
    )


def test_the_rest_endpoint_wakes_a_sleeping_deployment_and_says_to_try_again_shortly(
    client_as: Any, device: Any
) -> None:
    """It answered 409 'no replica is loaded now.' for good: only a /v1/ request woke it."""
    deployment, release = asleep()

    first, second = rest_infer(client_as, deployment.name), rest_infer(client_as, deployment.name)

    for response in (first, second):
        assert response.status_code == 503
        assert response.json()["error"] == "not_loaded"
        assert "waking, its replicas are loading; try again shortly" in response.json()["detail"]
        assert response["Retry-After"] == "2"
    assert [state for state, _, _ in replicas_of(release)] == [P.UNLOADED, P.REQUESTED]
    assert woken_notes(release) == 1


def test_the_rest_endpoint_says_why_a_sleeping_deployment_cannot_be_woken() -> None:
    DeviceFactory(capacity_bytes=2 * GIB)
    deployment, release = asleep()
    PlacementFactory(
        device=Placement.objects.get(releases=release).device,
        state=P.LOADED,
        pinned=True,
        reserved_bytes=2 * GIB,
    )

    with pytest.raises(Refused) as refused:
        traffic.infer(deployment=traffic.routed_deployments().get(pk=deployment.pk), task="generate", data={})

    assert (refused.value.status, refused.value.retry_after_s) == (503, REFUSED_RETRY_S)
    assert "cannot be placed: needs 1.0 GiB" in refused.value.reason
