"""Fixtures for the whole suite.

One real redis-server runs for the session; the cache, the channel layer and Celery point
at it. Users of each role, API keys of each role and API clients come from fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.test.utils import override_settings
from rest_framework.test import APIClient

from apps.core import dispatch, roles
from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.core.redis_layout import caches_for, channel_layers_for
from tests.procs import RedisServer


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # WhiteNoise warns about a missing STATIC_ROOT; run.sh collects into it, tests serve
    # assets from the finders, so an empty folder is all a fresh clone needs.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright keeps an event loop in the main thread for the rest of
    the session, after which async_to_sync (channel-layer publishes) cannot run there."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    with override_settings(
        REDIS_URL=server.url,
        CACHES=caches_for(server.url),
        CHANNEL_LAYERS=channel_layers_for(server.url, 200),
        CELERY_BROKER_URL=server.url,
        CELERY_RESULT_BACKEND=server.url,
    ):
        from moc_site.celery import app

        app.conf.update(broker_url=server.url, result_backend=server.url)
        yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_redis(redis_server: RedisServer) -> None:
    """Every test starts with an empty Redis (throttle counters, heartbeats, queues)."""
    redis_server.client().flushall()


@pytest.fixture
def make_user(django_user_model: type, db: None) -> Callable[..., object]:
    def make(role: Role | None = Role.VIEWER, username: str | None = None, **fields: object) -> object:
        name = username or f"{role.value if role else 'norole'}-{django_user_model.objects.count() + 1}"
        user = django_user_model.objects.create_user(username=name, password="pw-for-tests-only", **fields)
        if role is not None:
            roles.set_role(user, role)
        return user

    return make


@pytest.fixture
def viewer(make_user: Callable[..., object]) -> object:
    return make_user(Role.VIEWER, "viewer")


@pytest.fixture
def operator(make_user: Callable[..., object]) -> object:
    return make_user(Role.OPERATOR, "operator")


@pytest.fixture
def admin_user(make_user: Callable[..., object]) -> object:
    return make_user(Role.ADMIN, "admin")


@pytest.fixture
def admin_client_(make_user: Callable[..., object]) -> Client:
    """A staff user with the admin role, logged in to the Django admin (`admin_user` is not staff,
    so pytest-django's `admin_client`, which logs that user in, cannot open the admin)."""
    client = Client()
    client.force_login(make_user(Role.ADMIN, is_staff=True))
    return client


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def client_as(make_user: Callable[..., object]) -> Callable[[Role | None], APIClient]:
    """An API client logged in (session) as a fresh user of the role; None = anonymous."""

    def make(role: Role | None) -> APIClient:
        client = APIClient()
        if role is not None:
            client.force_authenticate(user=None)
            client.force_login(make_user(role))
        return client

    return make


@pytest.fixture
def key_client(make_user: Callable[..., object]) -> Callable[..., APIClient]:
    """An API client that sends `Authorization: Bearer <key>` for a key of the role."""
    from apps.core import services

    def make(role: Role, owner_role: Role | None = None, scheme: str = "Bearer") -> APIClient:
        owner = make_user(owner_role or role)
        _, secret = services.api_key_create(
            owner=owner, name="test", role=role, acting_role=owner_role or role
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {secret}")
        client.key_secret = secret
        return client

    return make


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo artefacts (apps/models/demo), made once per session into a folder of their own;
    skips where the demo extra is not installed. Tests must not change them."""
    from apps.models import demo

    missing = demo.missing_packages()
    if missing:
        pytest.skip(f"the demo extra is not installed (missing {', '.join(missing)})")
    out = tmp_path_factory.mktemp("demo-roots") / "models"
    demo.make(out, force=False, log=lambda _line: None)
    return out


@pytest.fixture(scope="session")
def demo_variants(demo_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model root holding the demo LM's bad variants (apps/models/demo/variants.py), made
    once per session from `demo_models`; tests must not change them."""
    from apps.models import demo
    from apps.models.demo.variants import make_variants

    out = tmp_path_factory.mktemp("variant-roots") / "models"
    make_variants(out, base=demo_models / demo.BASE, log=lambda _line: None)
    return out


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """(task name, args, options) of every task message MOC sent through apps.core.dispatch,
    recorded instead of reaching a broker, for tests where no worker runs."""
    sent: list[tuple[str, list[Any], dict[str, Any]]] = []

    def record(name: str, *, args: Any = (), **options: Any) -> None:
        sent.append((name, list(args), options))

    monkeypatch.setattr(dispatch, "send", record)
    return sent


@pytest.fixture
def beats_current(settings: Any) -> None:
    """A worker's one beat (tests/serving/test_inference_faults.heard) stays current all the test."""
    settings.MOC_WORKER_SILENT_AFTER_S = 60


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Inference without a device worker: every request MOC sends a placement is answered at once,
    as its worker would, with the placement's id as the text (so a test sees who answered); the
    placements asked, in order."""
    placements: list[int] = []

    def answer(name: str, *, args: Any = (), **_: Any) -> None:
        placements.append(args[0])
        redis_client().rpush(args[2], json.dumps({"ok": True, "result": {"text": str(args[0])}}))

    monkeypatch.setattr(dispatch, "send", answer)
    return placements


@pytest.fixture
def scrape(settings: Any) -> Callable[[], str]:
    """GET /metrics as Prometheus does, with the metrics token; the text it answers."""
    settings.MOC_METRICS_TOKEN = "metrics-token-for-tests"

    def get() -> str:
        response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-for-tests")
        assert response.status_code == 200
        return response.content.decode()

    return get
