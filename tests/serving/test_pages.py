"""Serving on the pages: live placement lists on the GPUs, device and version pages, their Load,
Unload and Pin buttons, and the version page's Try it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.fleet.domain.kinds import DeviceKind
from apps.fleet.domain.states import NodeState
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.models.models import ModelVersion
from apps.serving import inference, messages
from apps.serving.domain.breaker import BreakerConfig
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PlacementState
from apps.serving.models import InferenceRecord, Placement
from apps.serving.resilience import Breakers
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory
from tests.models.factories import ModelVersionFactory
from tests.pages import with_sections
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]
P = PlacementState


def _servable(**fields: Any) -> ModelVersion:
    """A version MOC can load: a valid Hugging Face causal LM of 2 GB."""
    defaults = {
        "kind": "causal-lm",
        "format": ModelFormat.HF,
        "validation_state": ValidationState.VALID,
        "size_bytes": 2_000_000_000,
    }
    return ModelVersionFactory(**{**defaults, **fields})


def _page(client: APIClient, url: str, **params: str) -> str:
    """The page as a browser shows it: with serving's sections on fleet's and the registry's pages."""
    return with_sections(client, url, params)


def _gpus(client: APIClient) -> str:
    return _page(client, reverse("fleet:devices"))


def _block(page: str, scope: str, owner: int) -> str:
    """One live placement list of a page, its own <div> and all it holds."""
    start = page.find(f'<div id="placements-{scope}-{owner}"')
    assert start >= 0, f"no live list placements-{scope}-{owner}"
    depth = 0
    for tag in re.finditer(r"<div\b|</div>", page[start:]):
        depth += 1 if tag.group(0) == "<div" else -1
        if depth == 0:
            return page[start : start + tag.end()]
    raise AssertionError("the list's <div> is never closed")


def _press(client: APIClient, url: str, data: dict | None = None, **kwargs: Any) -> Any:
    """Press a page's button: a form POST, as a browser sends it."""
    return client.post(url, data or {}, format="multipart", **kwargs)


def _messages(response: Any) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


# The live lists


@pytest.mark.parametrize("state", [P.REQUESTED, P.LOADING, P.LOADED, P.UNLOADING])
def test_gpus_page_lists_an_active_placement_on_its_device_with_its_state(
    client_as: Client, state: P
) -> None:
    placement = PlacementFactory(state=state, version__model__name="llama")

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert f'href="{placement.version.get_absolute_url()}"' in block
    assert f'data-fig="state">{placement.get_state_display()}<' in block


@pytest.mark.parametrize(
    ("state", "error_class", "error"),
    [(P.FAILED, "out_of_memory", "CUDA out of memory"), (P.LOST, "device_lost", "no worker consumes it")],
)
def test_gpus_page_shows_why_a_placement_failed_or_was_lost_lately(
    client_as: Client, state: P, error_class: str, error: str
) -> None:
    placement = PlacementFactory(state=state, error_class=error_class, error=error, ended_at=timezone.now())

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert 'class="badge bad"' in block
    assert f"<code>{error_class}</code>: {error}" in block


def test_gpus_page_shows_why_a_placement_was_unloaded_lately(client_as: Client) -> None:
    placement = PlacementFactory(
        state=P.UNLOADED, end_reason="unused for 301 s (keep-alive 300 s)", ended_at=timezone.now()
    )

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert "unused for 301 s (keep-alive 300 s)" in block


def test_gpus_page_leaves_out_placements_that_ended_long_ago(client_as: Client) -> None:
    placement = PlacementFactory(
        state=P.FAILED, error="old news", ended_at=timezone.now() - timedelta(hours=2)
    )

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert "old news" not in block
    assert "Nothing loaded." in block


def test_gpus_page_shows_measured_memory_once_the_worker_measured_it(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, reserved_bytes=20 * GIB, measured_bytes=12 * GIB)

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert '12.0\xa0GiB <span class="muted">measured' in block


def test_gpus_page_marks_a_pinned_placement(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, pinned=True)

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert '<span class="tag" title="Never evicted to make room">pinned</span>' in block


@pytest.mark.parametrize(
    ("device", "title"),
    [
        ({"simulated": True}, "simulated GPU: weights in host memory"),
        ({"kind": DeviceKind.CPU}, "CPU device: weights in host memory"),
    ],
)
def test_held_memory_on_a_simulated_gpu_or_a_cpu_says_the_weights_are_in_host_memory(
    client_as: Client, device: dict, title: str
) -> None:
    placement = PlacementFactory(state=P.LOADED, device=DeviceFactory(**device))

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert f'title="{title}"' in block


def test_held_memory_on_a_real_gpu_says_nothing_of_host_memory(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED)

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert "host memory" not in block


def test_gpus_page_polls_its_device_lists_every_3_seconds_in_one_request(client_as: Client) -> None:
    node = NodeFactory()
    first, second = DeviceFactory.create_batch(2, node=node)
    third = DeviceFactory(node=NodeFactory())  # a second node: still one poll for the whole page

    page = _gpus(client_as(Role.VIEWER))

    ids = "&amp;".join(f"device={d.pk}" for d in (first, second, third))
    poll = f'hx-get="{reverse("serving:placements_live")}?{ids}"'
    assert page.count("data-placements-poll") == 1
    assert poll in page
    assert 'hx-trigger="every 3s"' in page


def test_live_poll_answers_each_devices_list_for_htmx_to_swap_in_by_id(client_as: Client) -> None:
    loaded = PlacementFactory(state=P.LOADED, version__model__name="llama")
    idle = DeviceFactory()

    page = _page(
        client_as(Role.VIEWER), reverse("serving:placements_live"), device=[loaded.device_id, idle.pk]
    )

    assert "<html" not in page
    assert re.search(rf'<div id="placements-device-{loaded.device_id}"[^>]* hx-swap-oob="true">', page)
    assert f'id="placements-device-{idle.pk}"' in page
    assert "llama" in _block(page, "device", loaded.device_id)


def test_live_poll_reads_a_fixed_number_of_queries_however_many_devices(
    client_as: Client, django_assert_max_num_queries: Callable
) -> None:
    client = client_as(Role.OPERATOR)
    devices = DeviceFactory.create_batch(6)
    for device in devices:
        PlacementFactory(device=device, state=P.LOADED)
        PlacementFactory(device=device, state=P.FAILED, ended_at=timezone.now())

    with django_assert_max_num_queries(6):
        page = _page(client, reverse("serving:placements_live"), device=[d.pk for d in devices])

    assert page.count('data-state="failed"') == 6


def test_live_poll_of_a_version_lists_where_it_is_loaded(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADING, device__node__name="gpu-box-3")

    page = _page(
        client_as(Role.VIEWER), reverse("serving:placements_live"), version=str(placement.version_id)
    )

    block = _block(page, "version", placement.version_id)
    assert "gpu-box-3" in block
    assert "Loading" in block


def test_device_page_shows_its_live_list_and_polls_it(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version__model__name="llama")

    page = _page(client_as(Role.VIEWER), reverse("fleet:device", args=[placement.device_id]))

    assert "llama" in _block(page, "device", placement.device_id)
    assert f'?device={placement.device_id}" hx-trigger="every 3s"' in page


def test_device_page_shows_a_bounded_recent_history_with_a_link_to_all(client_as: Client) -> None:
    device = DeviceFactory()
    now = timezone.now()
    ended = [
        PlacementFactory(device=device, state=P.UNLOADED, ended_at=now - timedelta(hours=i + 1))
        for i in range(15)
    ]

    page = _page(client_as(Role.VIEWER), reverse("fleet:device", args=[device.pk]))

    history = page[page.index("<h2>Recent placements</h2>") :]
    shown = [int(pk) for pk in re.findall(r'<tr data-placement="(\d+)">', history)]
    assert shown == [p.pk for p in ended[:10]]  # the newest ten, newest first
    assert "The latest 10 of 15." in history
    assert f'href="{reverse("serving:placements")}?device={device.pk}"' in history


def test_device_page_history_never_calls_an_ended_placement_pinned(client_as: Client) -> None:
    device = DeviceFactory()
    PlacementFactory(device=device, state=P.UNLOADED, pinned=True, ended_at=timezone.now())

    page = _page(client_as(Role.VIEWER), reverse("fleet:device", args=[device.pk]))

    assert "pinned" not in page


def test_live_list_never_calls_a_placement_that_ended_lately_pinned(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOST, pinned=True, ended_at=timezone.now())

    block = _block(_gpus(client_as(Role.VIEWER)), "device", placement.device_id)

    assert f'data-placement="{placement.pk}"' in block
    assert "pinned" not in block


def test_placements_page_calls_only_active_placements_pinned(client_as: Client) -> None:
    PlacementFactory(state=P.UNLOADED, pinned=True, ended_at=timezone.now(), version__model__name="gone")

    page = _page(client_as(Role.VIEWER), reverse("serving:placements"))

    assert "gone" in page
    assert "<td>pinned</td>" not in page


def test_device_load_on_a_retired_device_is_refused_saying_so(client_as: Client) -> None:
    device = DeviceFactory(retired_at=timezone.now())
    version = _servable()

    response = _press(
        client_as(Role.OPERATOR),
        reverse("serving:device_load", args=[device.pk]),
        {"version": version.pk},
        follow=True,
    )

    assert "retired" in _messages(response)
    assert not Placement.objects.exists()


# Who sees the buttons


def test_viewer_sees_the_lists_but_no_load_unload_or_pin_buttons(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable())

    client = client_as(Role.VIEWER)
    pages = [_gpus(client), _page(client, placement.version.get_absolute_url())]

    for page in pages:
        assert f'id="placements-device-{placement.device_id}"' in page or "placements-version-" in page
        assert reverse("serving:unload", args=[placement.pk]) not in page
        assert reverse("serving:pin", args=[placement.pk]) not in page
        assert reverse("serving:device_load", args=[placement.device_id]) not in page
        assert reverse("serving:version_load", args=[placement.version_id]) not in page
        assert reverse("serving:version_try", args=[placement.version_id]) not in page


def test_operator_sees_unload_and_pin_on_an_active_placement_and_a_load_form_per_device(
    client_as: Client,
) -> None:
    placement = PlacementFactory(state=P.LOADED)
    _servable(model__name="llama")

    page = _gpus(client_as(Role.OPERATOR))

    assert reverse("serving:unload", args=[placement.pk]) in page
    assert 'name="pinned" value="1"><button type="submit">Pin</button>' in page
    assert reverse("serving:device_load", args=[placement.device_id]) in page


def test_operator_sees_no_buttons_on_an_ended_placement(client_as: Client) -> None:
    placement = PlacementFactory(state=P.FAILED, ended_at=timezone.now())

    page = _gpus(client_as(Role.OPERATOR))

    assert reverse("serving:unload", args=[placement.pk]) not in page
    assert reverse("serving:pin", args=[placement.pk]) not in page


def test_load_form_offers_valid_unarchived_servable_versions_by_model_name(client_as: Client) -> None:
    DeviceFactory()
    zeta = _servable(model__name="zeta")
    alpha = _servable(model__name="alpha")
    _servable(model__name="archived", archived=True)
    _servable(model__name="broken", validation_state=ValidationState.INVALID)
    _servable(model__name="bare", kind="", format=ModelFormat.SAFETENSORS)

    page = _gpus(client_as(Role.OPERATOR))

    offered = re.findall(r'<option value="\d+">([^<]*)</option>', page.split('class="load-form"', 1)[1])
    assert [o.split(" · ")[0] for o in offered][:2] == [str(alpha), str(zeta)]
    assert not any(name in " ".join(offered) for name in ("archived", "broken", "bare"))


def test_load_form_is_not_offered_on_an_offline_node(client_as: Client) -> None:
    device = DeviceFactory(node=NodeFactory(state=NodeState.OFFLINE))
    _servable()

    page = _gpus(client_as(Role.OPERATOR))

    assert reverse("serving:device_load", args=[device.pk]) not in page


@pytest.mark.parametrize("action", ["device_load", "version_load", "unload", "pin", "version_try"])
def test_serving_buttons_are_refused_to_viewers(client_as: Client, action: str) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable())
    pk = {
        "device_load": placement.device_id,
        "version_load": placement.version_id,
        "version_try": placement.version_id,
    }

    response = client_as(Role.VIEWER).post(
        reverse(f"serving:{action}", args=[pk.get(action, placement.pk)]),
        {"version": placement.version_id, "pinned": "1", "task": "generate", "prompt": "hi"},
        format="multipart",
    )

    assert response.status_code == 403
    placement.refresh_from_db()
    assert (placement.state, placement.pinned, Placement.objects.count()) == (P.LOADED, False, 1)


# Load, unload, pin


def test_device_load_by_an_operator_requests_a_placement_on_that_device(client_as: Client) -> None:
    device = DeviceFactory()
    DeviceFactory()  # another device the scheduler must not choose
    version = _servable()

    response = _press(
        client_as(Role.OPERATOR),
        reverse("serving:device_load", args=[device.pk]),
        {"version": version.pk, "next": "/fleet/"},
    )

    placement = Placement.objects.get()
    assert (placement.version, placement.device, placement.state) == (version, device, P.REQUESTED)
    assert response.status_code == 302
    assert response["Location"] == "/fleet/"


def test_device_load_sends_the_load_to_the_devices_worker_once_committed(
    client_as: Client, django_capture_on_commit_callbacks: Callable, dispatched: list
) -> None:
    device = DeviceFactory()

    with django_capture_on_commit_callbacks(execute=True):
        _press(
            client_as(Role.OPERATOR),
            reverse("serving:device_load", args=[device.pk]),
            {"version": _servable().pk},
        )

    [(name, args, options)] = dispatched
    assert (name, args, options["queue"]) == (
        messages.PLACEMENT_LOAD,
        [Placement.objects.get().pk],
        device.queue,
    )


def test_device_load_says_the_version_is_on_its_way(client_as: Client) -> None:
    device = DeviceFactory()
    version = _servable()

    response = _press(
        client_as(Role.OPERATOR),
        reverse("serving:device_load", args=[device.pk]),
        {"version": version.pk},
        follow=True,
    )

    assert response.status_code == 200
    assert f"{version} is requested on {device}" in _messages(response)


def test_device_load_refused_by_the_scheduler_shows_its_reason(client_as: Client) -> None:
    device = DeviceFactory(capacity_bytes=1 * GIB)
    version = _servable(size_bytes=8 * GIB)

    response = _press(
        client_as(Role.OPERATOR),
        reverse("serving:device_load", args=[device.pk]),
        {"version": version.pk},
        follow=True,
    )

    assert response.status_code == 200
    assert f"{version} cannot be placed" in _messages(response)
    assert 'class="msg error"' in response.content.decode()
    assert not Placement.objects.exists()


def test_device_load_of_an_invalid_version_shows_why(client_as: Client) -> None:
    device = DeviceFactory()
    version = _servable(validation_state=ValidationState.INVALID, validation_error="bad header")

    response = _press(
        client_as(Role.OPERATOR),
        reverse("serving:device_load", args=[device.pk]),
        {"version": version.pk},
        follow=True,
    )

    assert response.status_code == 200
    assert "failed validation and cannot be loaded: bad header" in _messages(response)


def test_device_load_without_a_version_says_to_choose_one(client_as: Client) -> None:
    device = DeviceFactory()

    response = _press(
        client_as(Role.OPERATOR), reverse("serving:device_load", args=[device.pk]), {}, follow=True
    )

    assert response.status_code == 200
    assert "Choose a version to load." in _messages(response)


def test_version_load_lets_the_scheduler_choose_the_device_and_returns_to_the_version(
    client_as: Client,
) -> None:
    device = DeviceFactory()
    version = _servable()

    response = _press(client_as(Role.OPERATOR), reverse("serving:version_load", args=[version.pk]))

    assert Placement.objects.get().device == device
    assert response["Location"] == version.get_absolute_url()


def test_version_load_with_no_device_anywhere_shows_the_reason(client_as: Client) -> None:
    version = _servable()

    response = _press(
        client_as(Role.OPERATOR), reverse("serving:version_load", args=[version.pk]), follow=True
    )

    assert response.status_code == 200
    assert f"{version} cannot be placed" in _messages(response)


def test_unload_moves_a_loaded_placement_to_unloading(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED)

    response = _press(client_as(Role.OPERATOR), reverse("serving:unload", args=[placement.pk]), follow=True)

    placement.refresh_from_db()
    assert placement.state == P.UNLOADING
    assert placement.end_reason.startswith("unloaded by operator")
    assert f"{placement.version} on {placement.device} is unloading." in _messages(response)


def test_unload_of_an_ended_placement_says_nothing_was_left_to_unload(client_as: Client) -> None:
    placement = PlacementFactory(state=P.UNLOADED)

    response = _press(client_as(Role.OPERATOR), reverse("serving:unload", args=[placement.pk]), follow=True)

    assert response.status_code == 200
    assert "was already unloaded" in _messages(response)


def test_unload_returns_to_the_page_the_button_was_on(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED)

    response = _press(
        client_as(Role.OPERATOR),
        reverse("serving:unload", args=[placement.pk]),
        {"next": placement.version.get_absolute_url()},
    )

    assert response["Location"] == placement.version.get_absolute_url()


def test_unload_does_not_follow_a_next_to_another_site(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED)

    response = _press(
        client_as(Role.OPERATOR),
        reverse("serving:unload", args=[placement.pk]),
        {"next": "https://elsewhere.example/"},
    )

    assert response["Location"] == placement.device.get_absolute_url()


def test_pin_pins_a_placement(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, pinned=False)

    _press(client_as(Role.OPERATOR), reverse("serving:pin", args=[placement.pk]), {"pinned": "1"})

    placement.refresh_from_db()
    assert placement.pinned is True


def test_pin_with_pinned_0_unpins_a_placement(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, pinned=True)

    _press(client_as(Role.OPERATOR), reverse("serving:pin", args=[placement.pk]), {"pinned": "0"})

    placement.refresh_from_db()
    assert placement.pinned is False


def test_pin_of_an_ended_placement_shows_why(client_as: Client) -> None:
    placement = PlacementFactory(state=P.FAILED)

    response = _press(
        client_as(Role.OPERATOR), reverse("serving:pin", args=[placement.pk]), {"pinned": "1"}, follow=True
    )

    assert response.status_code == 200
    assert "only active ones pin" in _messages(response)


def test_buttons_of_a_polled_list_return_to_the_page_that_polled(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED)

    page = (
        client_as(Role.OPERATOR)
        .get(
            reverse("serving:placements_live"),
            {"device": placement.device_id},
            HTTP_HX_REQUEST="true",
            HTTP_HX_CURRENT_URL="http://testserver/fleet/?q=node",
        )
        .content.decode()
    )

    assert '<input type="hidden" name="next" value="/fleet/?q=node">' in page


# The version page


def test_version_page_serving_section_lists_its_placements(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable(), device__node__name="gpu-box-9")

    page = _page(client_as(Role.VIEWER), placement.version.get_absolute_url())

    assert "<h2>Serving</h2>" in page
    assert "gpu-box-9" in _block(page, "version", placement.version_id)
    assert f'placements/live/?version={placement.version_id}" hx-trigger="every 3s"' in page


def test_version_page_says_where_nothing_is_loaded(client_as: Client) -> None:
    version = _servable()

    page = _page(client_as(Role.VIEWER), version.get_absolute_url())

    assert "Not loaded anywhere." in _block(page, "version", version.pk)


def test_version_page_offers_load_to_operators(client_as: Client) -> None:
    version = _servable()

    page = _page(client_as(Role.OPERATOR), version.get_absolute_url())

    assert reverse("serving:version_load", args=[version.pk]) in page


def test_version_page_offers_no_load_for_a_version_moc_cannot_serve(client_as: Client) -> None:
    version = ModelVersionFactory(kind="", format=ModelFormat.SAFETENSORS)

    page = _page(client_as(Role.OPERATOR), version.get_absolute_url())

    assert reverse("serving:version_load", args=[version.pk]) not in page
    assert "MOC cannot serve" in page


def test_version_page_shows_each_placements_breaker_with_its_last_error(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable())
    Breakers(redis_client()).record(
        placement.pk,
        BreakerConfig(failure_threshold=1),
        now=time.time(),
        error_class=ErrorClass.OUT_OF_MEMORY,
        error="CUDA out of memory",
    )

    block = _block(
        _page(client_as(Role.VIEWER), placement.version.get_absolute_url()), "version", placement.version_id
    )

    assert 'class="badge bad" data-fig="breaker">open<' in block
    assert "out_of_memory: CUDA out of memory" in block


def test_version_page_shows_a_closed_breaker_for_a_placement_without_failures(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable())

    block = _block(
        _page(client_as(Role.VIEWER), placement.version.get_absolute_url()), "version", placement.version_id
    )

    assert 'class="badge ok" data-fig="breaker">closed<' in block


def test_version_page_says_the_breaker_is_unknown_when_redis_is_away(
    client_as: Client, settings: Any
) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable())
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    block = _block(
        _page(client_as(Role.VIEWER), placement.version.get_absolute_url()), "version", placement.version_id
    )

    assert 'data-fig="breaker">unknown<' in block


def test_version_page_shows_the_last_hours_requests_failures_and_median_compute(client_as: Client) -> None:
    version = _servable()
    now = timezone.now()
    for ms in (10.0, 20.0, 90.0):
        InferenceRecord.objects.create(at=now, version=version, task="generate", outcome="ok", compute_ms=ms)
    InferenceRecord.objects.create(at=now, version=version, task="generate", outcome="timeout")
    InferenceRecord.objects.create(
        at=now - timedelta(hours=2), version=version, task="generate", outcome="ok", compute_ms=1.0
    )

    block = _block(_page(client_as(Role.VIEWER), version.get_absolute_url()), "version", version.pk)

    assert 'data-fig="requests">4<' in block
    assert 'data-fig="failed">1 failed<' in block
    assert 'data-fig="p50">20.0 ms<' in block


def test_version_page_offers_try_it_once_loaded(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable())

    page = _page(client_as(Role.OPERATOR), placement.version.get_absolute_url())

    assert f'hx-post="{reverse("serving:version_try", args=[placement.version_id])}"' in page
    assert 'name="max_new_tokens"' in page


def test_version_page_offers_no_try_it_while_nothing_is_loaded(client_as: Client) -> None:
    version = _servable()

    page = _page(client_as(Role.OPERATOR), version.get_absolute_url())

    assert reverse("serving:version_try", args=[version.pk]) not in page
    assert "Load it first" in page


def test_version_page_offers_a_language_model_both_generate_and_embed(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable())

    page = _page(client_as(Role.OPERATOR), placement.version.get_absolute_url())

    assert 'name="task" value="generate"' in page
    assert 'name="task" value="embed"' in page
    assert 'name="task" value="tensors"' not in page


ONNX_METADATA = {
    "inputs": [
        {"name": "input_ids", "dtype": "I64", "shape": ["batch", 4]},
        {"name": "mask", "dtype": "F32", "shape": [None, 2]},
    ]
}


def _graph(**fields: Any) -> ModelVersion:
    return _servable(kind="onnx-graph", format=ModelFormat.ONNX, metadata=ONNX_METADATA, **fields)


def test_version_page_offers_a_graph_a_form_built_from_its_inputs(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_graph())

    page = _page(client_as(Role.OPERATOR), placement.version.get_absolute_url())

    form = re.search(r'<form[^>]*data-try="tensors".*?</form>', page, re.S)
    assert form, "no form for the graph's tensors"
    form = form.group(0)
    assert 'name="task" value="tensors"' in form
    assert '<code>input_ids</code> <span class="muted">I64 [batch, 4]</span>' in form
    assert 'name="shape-0" value="1, 4"' in form
    assert ">0, 0, 0, 0</textarea>" in form
    assert '<code>mask</code> <span class="muted">F32 [?, 2]</span>' in form
    assert 'name="shape-1" value="1, 2"' in form
    assert 'name="task" value="generate"' not in page


def test_try_it_on_a_graph_sends_each_inputs_shape_and_values_and_shows_the_outputs(
    client_as: Client, monkeypatch: Any
) -> None:
    version = _graph()
    asked: dict[str, Any] = {}

    def infer(**kwargs: Any) -> dict[str, Any]:
        asked.update(kwargs)
        logits = {"dtype": "float32", "shape": [1, 4, 3], "data": [0.5] * 12}
        return {
            "placement": 7,
            "device": 1,
            "result": {"outputs": {"logits": logits}},
            "queue_ms": 1.0,
            "compute_ms": 2.0,
            "total_ms": 3.0,
        }

    monkeypatch.setattr(inference, "infer", infer)

    answer = _try(
        client_as(Role.OPERATOR),
        version,
        task="tensors",
        **{"shape-0": "1, 4", "data-0": "[[1, 2, 3, 4]]", "shape-1": "1 2", "data-1": "0.5, 1"},
    )

    assert asked["task"] == "tensors"
    assert asked["data"] == {
        "inputs": {
            "input_ids": {"shape": [1, 4], "data": [1, 2, 3, 4]},
            "mask": {"shape": [1, 2], "data": [0.5, 1]},
        }
    }
    assert "<code>logits</code>" in answer
    assert "[1, 4, 3]" in answer
    assert "<code>0.5000, 0.5000" in answer


def test_try_it_on_a_graph_names_the_input_whose_values_are_not_numbers(client_as: Client) -> None:
    version = _graph()

    answer = _try(
        client_as(Role.OPERATOR),
        version,
        task="tensors",
        **{"shape-0": "1, 4", "data-0": "1, two, 3, 4", "shape-1": "1, 2", "data-1": "0, 0"},
    )

    assert "input_ids: the shape takes whole numbers and the values numbers" in answer


def test_version_page_offers_an_embedding_model_a_text_to_embed(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable(kind="embedding"))

    page = _page(client_as(Role.OPERATOR), placement.version.get_absolute_url())

    assert 'name="task" value="embed"' in page
    assert 'name="max_new_tokens"' not in page


# Try it


def _try(client: APIClient, version: ModelVersion, htmx: bool = True, **fields: str) -> str:
    data = {
        "task": "generate",
        "prompt": "Once upon a time",
        "max_new_tokens": "8",
        "temperature": "0",
        **fields,
    }
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = client.post(
        reverse("serving:version_try", args=[version.pk]), data, format="multipart", **headers
    )
    assert response.status_code == 200
    return response.content.decode()


def test_try_it_with_no_loaded_placement_says_not_loaded(client_as: Client) -> None:
    version = _servable()

    answer = _try(client_as(Role.OPERATOR), version)

    assert "Refused (409)" in answer
    assert f"{version} is not loaded" in answer


def test_try_it_while_loading_says_to_try_again_shortly(client_as: Client) -> None:
    placement = PlacementFactory(state=P.LOADING, version=_servable())

    answer = _try(client_as(Role.OPERATOR), placement.version)

    assert "is loading; try again shortly." in answer
    assert "Try again in 2 s." in answer


def test_try_it_says_so_when_redis_does_not_answer(client_as: Client, settings: Any) -> None:
    placement = PlacementFactory(state=P.LOADED, version=_servable())
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    answer = _try(client_as(Role.OPERATOR), placement.version)

    assert "Refused (503):" in answer
    assert "Redis (REDIS_URL), which every request goes through, is unreachable" in answer
    assert "127.0.0.1:1" not in answer  # where it is goes to the log
    assert "Try again in 5 s." in answer


def test_try_it_answers_htmx_with_the_result_fragment_only(client_as: Client) -> None:
    version = _servable()

    answer = _try(client_as(Role.OPERATOR), version)

    assert answer.lstrip().startswith('<div id="try-result"')
    assert "<html" not in answer


def test_try_it_without_htmx_answers_a_whole_page_with_a_way_back(client_as: Client) -> None:
    version = _servable()

    page = _try(client_as(Role.OPERATOR), version, htmx=False)

    assert "<html" in page
    assert f'href="{version.get_absolute_url()}#serving"' in page


def test_try_it_shows_the_generated_text_and_its_figures(client_as: Client, monkeypatch: Any) -> None:
    version = _servable()
    asked: dict[str, Any] = {}

    def infer(**kwargs: Any) -> dict[str, Any]:
        asked.update(kwargs)
        result = {"text": " there was a GPU", "tokens_in": 4, "tokens_out": 5, "finish_reason": "length"}
        return {
            "placement": 7,
            "device": 1,
            "result": result,
            "queue_ms": 1.25,
            "compute_ms": 40.5,
            "total_ms": 44.0,
        }

    monkeypatch.setattr(inference, "infer", infer)

    answer = _try(client_as(Role.OPERATOR), version)

    assert '<pre class="answer" data-answer> there was a GPU</pre>' in answer
    assert "<dd>1.2 ms</dd>" in answer or "<dd>1.3 ms</dd>" in answer
    assert "<dd>40.5 ms</dd>" in answer
    assert "<dd>44.0 ms</dd>" in answer
    assert asked["data"] == {
        "prompt": "Once upon a time",
        "max_new_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": [],
    }


def test_try_it_on_an_embedding_model_shows_the_vectors_size_and_first_values(
    client_as: Client, monkeypatch: Any
) -> None:
    version = _servable(kind="embedding")
    vector = [0.5, -0.25, *[0.0] * 382]
    monkeypatch.setattr(
        inference,
        "infer",
        lambda **kwargs: {
            "placement": 7,
            "device": 1,
            "result": {"embeddings": [vector], "dim": 384},
            "queue_ms": 1.0,
            "compute_ms": 2.0,
            "total_ms": 3.0,
        },
    )

    answer = _try(client_as(Role.OPERATOR), version, task="embed", prompt="a sentence")

    assert "A vector of 384 dimensions" in answer
    assert "<code>0.5000, -0.2500, 0.0000" in answer


def test_try_it_asks_nothing_a_version_does_not_answer(client_as: Client) -> None:
    version = _servable(kind="embedding")

    answer = _try(client_as(Role.OPERATOR), version, task="generate")

    assert "does not answer this request" in answer


def test_try_it_refuses_an_empty_prompt_with_the_fields_name(client_as: Client) -> None:
    version = _servable()

    answer = _try(client_as(Role.OPERATOR), version, prompt="")

    assert "prompt:" in answer


# The placements list


def test_placements_page_shows_why_each_placement_ended(client_as: Client) -> None:
    PlacementFactory(state=P.LOST, error_class="device_lost")
    PlacementFactory(state=P.UNLOADED, end_reason="evicted to make room for llama v2")

    page = _page(client_as(Role.VIEWER), reverse("serving:placements"))

    assert "<code>device_lost</code>" in page
    assert "evicted to make room for llama v2" in page


def test_the_old_placements_address_redirects_to_serving_with_its_filters(client_as: Client) -> None:
    response = client_as(Role.VIEWER).get("/fleet/placements/?state=loaded")

    assert response.status_code == 301
    assert response["Location"] == "/serving/placements/?state=loaded"
