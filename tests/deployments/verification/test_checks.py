"""Each check's pass and fail paths that need no model's answer: real database, real Redis (the
session's redis-server: broker, channel layer), real files; the HTTP checks against a closed port."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from apps.core import roles
from apps.core.domain.roles import Role
from apps.core.models import ApiKey
from apps.deployments import figures
from apps.deployments.domain.checks import CheckStatus
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import ReleaseState
from apps.deployments.models import Release
from apps.deployments.verification import notifications, probes, web
from apps.deployments.verification.base import Context, context_for
from apps.deployments.verification.checks import (
    api_endpoint,
    availability,
    database,
    health,
    integrations,
    monitoring,
    performance,
    quality,
    rollback,
    security,
)
from apps.fleet.domain.states import DeviceHealth
from apps.models.domain.formats import FileFormat, ModelFormat
from apps.serving.domain.states import PlacementState
from tests.deployments.factories import DeploymentFactory, ReleaseFactory, ValidVersionFactory
from tests.fleet.factories import DeviceFactory
from tests.models.factories import ModelFileFactory
from tests.procs import free_port
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db
GIB = 1 << 30


@pytest.fixture
def closed_url(settings: Any) -> str:
    """MOC_PUBLIC_URL pointing at a port where nothing listens."""
    settings.MOC_PUBLIC_URL = f"http://127.0.0.1:{free_port()}"
    return settings.MOC_PUBLIC_URL


def release_with(placements: int = 1, state: str = PlacementState.LOADED, **deployment: Any) -> Release:
    release = ReleaseFactory(
        deployment=DeploymentFactory(**deployment),
        model_version=ValidVersionFactory(kind="causal-lm", format=ModelFormat.HF),
    )
    for _ in range(placements):
        release.placements.add(PlacementFactory(version=release.model_version, state=state))
    return release


def ctx(release: Release) -> Context:
    return context_for(release)


# availability


def test_availability_passes_with_every_replica_loaded_on_a_healthy_device(redis_server: Any) -> None:
    outcome = availability.run(ctx(release_with(2, replicas=2)))
    assert outcome.status == CheckStatus.PASS, outcome.reason
    assert outcome.reason == "2 of 2 replicas loaded and healthy"


def test_availability_fails_when_replicas_are_missing(redis_server: Any) -> None:
    outcome = availability.run(ctx(release_with(1, replicas=3)))
    assert outcome.status == CheckStatus.FAIL
    assert outcome.reason.startswith("1 of 3 replicas placed")


def test_availability_fails_naming_a_placement_still_loading(redis_server: Any) -> None:
    release = release_with(1, state=PlacementState.LOADING)
    outcome = availability.run(ctx(release))
    assert outcome.status == CheckStatus.FAIL
    assert f"placement {release.placements.get().pk} is loading" in outcome.reason


def test_availability_fails_on_an_unhealthy_device(redis_server: Any) -> None:
    release = release_with(1)
    placement = release.placements.get()
    placement.device.health = DeviceHealth.UNHEALTHY
    placement.device.save()
    outcome = availability.run(ctx(release))
    assert outcome.status == CheckStatus.FAIL
    assert "unhealthy" in outcome.reason


# database


def test_database_passes_with_every_migration_applied() -> None:
    outcome = database.run(ctx(release_with()))
    assert outcome.status == CheckStatus.PASS
    assert outcome.evidence["unapplied"] == []


def test_database_fails_naming_an_unapplied_migration() -> None:
    release = release_with()
    [(app, latest)] = MigrationLoader(connection).graph.leaf_nodes("deployments")
    MigrationRecorder(connection).record_unapplied(app, latest)
    outcome = database.run(ctx(release))
    assert outcome.status == CheckStatus.FAIL
    assert f"deployments.{latest}" in outcome.reason


# integrations


@pytest.fixture
def provider() -> Iterator[list[notifications.Reached]]:
    answers: list[notifications.Reached] = []

    def reach(timeout_s: float) -> list[notifications.Reached]:
        return list(answers)

    notifications.register(reach)
    yield answers
    notifications.unregister(reach)


def test_integrations_pass_when_broker_and_channel_layer_answer(redis_server: Any) -> None:
    outcome = integrations.run(ctx(release_with()))
    assert outcome.status == CheckStatus.PASS, outcome.reason
    assert integrations.NO_CHANNELS in outcome.reason
    assert "came back" in outcome.evidence["channel_layer"]


def test_integrations_fail_naming_an_unreachable_notification_channel(
    redis_server: Any, provider: list[notifications.Reached]
) -> None:
    provider += [
        notifications.Reached("ops-webhook", True, "200"),
        notifications.Reached("pager", False, "connection refused"),
    ]
    outcome = integrations.run(ctx(release_with()))
    assert outcome.status == CheckStatus.FAIL
    assert outcome.reason == "notification channel pager: connection refused"


def test_integrations_fail_when_the_broker_is_unreachable(settings: Any, redis_server: Any) -> None:
    from moc_site.celery import app

    closed = f"redis://127.0.0.1:{free_port()}/0"
    app.conf.broker_url = closed
    try:
        outcome = integrations.run(ctx(release_with()))
    finally:
        app.conf.broker_url = redis_server.url
    assert outcome.status == CheckStatus.FAIL
    assert outcome.reason.startswith("broker:")


# rollback


def test_rollback_skips_a_first_release() -> None:
    outcome = rollback.run(ctx(release_with()))
    assert outcome.status == CheckStatus.SKIP
    assert "first release" in outcome.reason


def previous_of(release: Release, **version: Any) -> Release:
    previous = ReleaseFactory(
        deployment=release.deployment,
        model_version=ValidVersionFactory(model=release.model_version.model, kind="causal-lm", **version),
        state="promoted",
    )
    Release.objects.filter(pk=release.pk).update(previous_release=previous)
    return previous


def test_rollback_passes_while_the_previous_release_is_still_loaded() -> None:
    release = release_with()
    previous = previous_of(release)
    previous.placements.add(PlacementFactory(version=previous.model_version, state=PlacementState.LOADED))
    outcome = rollback.run(ctx(release))
    assert outcome.status == CheckStatus.PASS
    assert "still loaded" in outcome.reason


def test_rollback_fails_when_the_previous_version_is_archived() -> None:
    release = release_with()
    previous_of(release, archived=True)
    outcome = rollback.run(ctx(release))
    assert outcome.status == CheckStatus.FAIL
    assert "archived" in outcome.reason


def test_rollback_passes_when_the_previous_version_would_fit(redis_server: Any) -> None:
    release = release_with()
    previous_of(release, estimated_vram_bytes=10 * GIB)
    outcome = rollback.run(ctx(release))
    assert outcome.status == CheckStatus.PASS, outcome.reason
    assert "would fit" in outcome.reason


def test_rollback_counts_the_releases_own_placements_as_freed(redis_server: Any) -> None:
    # given: one device, full with this release's placement
    device = DeviceFactory(capacity_bytes=30 * GIB)
    release = release_with(0)
    release.placements.add(
        PlacementFactory(version=release.model_version, device=device, reserved_bytes=25 * GIB)
    )
    release.deployment.device = device
    release.deployment.save()
    previous_of(release, estimated_vram_bytes=20 * GIB)
    # when
    outcome = rollback.run(ctx(release))
    # then: a rollback unloads it, so the previous version fits where it is
    assert outcome.status == CheckStatus.PASS, outcome.reason


def test_rollback_fails_with_the_schedulers_reason_when_nothing_fits(redis_server: Any) -> None:
    release = release_with()
    previous_of(release, estimated_vram_bytes=500 * GIB)
    outcome = rollback.run(ctx(release))
    assert outcome.status == CheckStatus.FAIL
    assert "would not fit: needs" in outcome.reason


# security: files and pickles (the endpoint's refusal needs a server: tests/integration)


@pytest.fixture
def version_on_disk(tmp_path: Path, settings: Any) -> Any:
    settings.MOC_MODEL_ROOTS = [str(tmp_path)]
    folder = tmp_path / "llm" / "v1"
    folder.mkdir(parents=True)
    version = ValidVersionFactory(path=str(folder), format=ModelFormat.HF)
    for name, body in (("model.safetensors", b"weights" * 100), ("config.json", b"{}")):
        (folder / name).write_bytes(body)
        ModelFileFactory(version=version, path=name, sha256=hashlib.sha256(body).hexdigest())
    return version


def test_security_files_pass_when_they_hash_to_the_registrys_checksums(version_on_disk: Any) -> None:
    files = list(version_on_disk.files.all())
    assert security.checksum_problems(version_on_disk, files) == []
    assert security.pickles(version_on_disk, files) == []


def test_security_fails_a_file_changed_since_the_scan(version_on_disk: Any) -> None:
    (Path(version_on_disk.path) / "model.safetensors").write_bytes(b"tampered")
    problems = security.checksum_problems(version_on_disk, list(version_on_disk.files.all()))
    assert len(problems) == 1
    assert problems[0].startswith("model.safetensors hashes to")


def test_security_fails_a_file_outside_the_model_roots(
    version_on_disk: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MOC_MODEL_ROOTS = [str(tmp_path / "elsewhere")]
    problems = security.checksum_problems(version_on_disk, list(version_on_disk.files.all()))
    assert all("outside the model roots" in p for p in problems)


def test_security_names_pickle_files(version_on_disk: Any) -> None:
    ModelFileFactory(version=version_on_disk, path="pytorch_model.bin", format=FileFormat.PYTORCH)
    ModelFileFactory(version=version_on_disk, path="extra.pkl", format=FileFormat.OTHER)
    found = security.pickles(version_on_disk, list(version_on_disk.files.order_by("path")))
    assert [line.split()[0] for line in found] == ["extra.pkl", "pytorch_model.bin"]


def test_security_fails_when_the_endpoint_cannot_be_reached(version_on_disk: Any, closed_url: str) -> None:
    release = ReleaseFactory(model_version=version_on_disk)
    outcome = security.run(ctx(release))
    assert outcome.status == CheckStatus.FAIL
    assert any("could not be reached" in p for p in outcome.evidence["problems"])


# the HTTP checks' fail paths


def test_api_endpoint_fails_when_moc_cannot_be_reached_and_leaves_no_key(closed_url: str) -> None:
    outcome = api_endpoint.run(ctx(release_with()))
    assert outcome.status == CheckStatus.FAIL
    assert closed_url in outcome.reason
    assert "could not be reached" in outcome.reason
    # the key made for the request was deleted after it
    assert not ApiKey.objects.filter(owner__username=web.SYSTEM_USERNAME).exists()


def test_the_verification_key_is_operator_scoped_short_lived_and_deleted_after_its_request(
    closed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[ApiKey] = []
    real_post = web.post

    def post(*args: Any, **kwargs: Any) -> Any:
        seen.extend(ApiKey.objects.filter(owner__username=web.SYSTEM_USERNAME))
        return real_post(*args, **kwargs)

    monkeypatch.setattr(web, "post", post)
    began = timezone.now()

    with pytest.raises(httpx.ConnectError):
        web.authenticated_post("/api/v1/x/", {}, timeout_s=10, purpose="a test")

    (key,) = seen
    assert key.role == Role.OPERATOR
    assert began + dt.timedelta(seconds=10) < key.expiry_date <= timezone.now() + dt.timedelta(seconds=15)
    assert not ApiKey.objects.filter(pk=key.pk).exists()
    user = key.owner
    assert (user.has_usable_password(), roles.role_of(user)) == (False, Role.OPERATOR)


@pytest.mark.parametrize(
    "public_url",
    [
        "http://moc.example.org:8000",
        "http://10.0.0.5:8000",
        "ftp://127.0.0.1/",
        "http://127.0.0.1.example.org",
    ],
)
def test_no_key_is_sent_to_a_public_url_that_is_not_https_or_loopback(settings: Any, public_url: str) -> None:
    settings.MOC_PUBLIC_URL = public_url

    outcome = api_endpoint.run(ctx(release_with()))

    assert outcome.status == CheckStatus.FAIL
    assert outcome.reason.startswith(f"no request sent: MOC_PUBLIC_URL is '{public_url}'")
    assert "Set MOC_PUBLIC_URL to MOC's https:// address" in outcome.reason
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "public_url",
    ["https://moc.example.org", "http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"],
)
def test_a_key_may_go_over_https_or_to_a_loopback_host(public_url: str) -> None:
    assert web.insecure(public_url) is None


def test_moc_self_url_is_called_as_named_and_says_it_came_through_the_tls_proxy(settings: Any) -> None:
    """Compose's shape: the public URL is the proxy's https name, which inside a worker's container
    is nobody; the workers reach web at MOC_SELF_URL on the compose network instead."""
    seen: list[dict[str, str]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.handle_request, daemon=True).start()
    settings.MOC_PUBLIC_URL = "https://moc.example.org"
    settings.MOC_SELF_URL = f"http://127.0.0.1:{server.server_port}/"
    try:
        assert web.key_problem() is None
        response = web.post("/api/v1/deployments/chat/infer/", {"task": "generate"}, timeout_s=5)
    finally:
        server.server_close()

    assert response.status_code == 401
    assert seen[0]["path"] == "/api/v1/deployments/chat/infer/"
    assert seen[0]["x-forwarded-proto"] == "https"
    assert web.url("/metrics") == f"http://127.0.0.1:{server.server_port}/metrics"


def test_a_named_moc_self_url_takes_the_key_over_plain_http_but_the_public_url_alone_does_not(
    settings: Any,
) -> None:
    settings.MOC_PUBLIC_URL = "http://moc.example.org:8000"
    settings.MOC_SELF_URL = ""
    assert "MOC_SELF_URL" in (web.key_problem() or "")
    assert web.headers() == {}

    settings.MOC_SELF_URL = "http://web:8001"
    assert web.key_problem() is None
    assert web.base() == "http://web:8001"


def test_an_existing_account_someone_can_log_in_as_gets_no_key(
    closed_url: str, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user(username=web.SYSTEM_USERNAME, password="guessable")
    roles.set_role(user, Role.VIEWER)

    outcome = api_endpoint.run(ctx(release_with()))

    assert outcome.status == CheckStatus.FAIL
    assert "has a password someone could log in with" in outcome.reason
    assert not ApiKey.objects.exists()
    user.refresh_from_db()
    assert roles.role_of(user) == Role.VIEWER  # left as it was: MOC does not change someone's role


@pytest.mark.parametrize("role", [Role.ADMIN, Role.VIEWER, None])
def test_an_existing_account_of_another_role_is_neither_promoted_nor_demoted(
    closed_url: str, django_user_model: Any, role: Role | None
) -> None:
    user = django_user_model.objects.create_user(username=web.SYSTEM_USERNAME)
    user.set_unusable_password()
    user.save()
    roles.set_role(user, role)

    outcome = api_endpoint.run(ctx(release_with()))

    assert outcome.status == CheckStatus.FAIL
    assert f"holds the role {role or 'none'}, not operator" in outcome.reason
    user = django_user_model.objects.get(pk=user.pk)
    assert roles.role_of(user) == role
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"release": 5, "version": 2}, "lacks result"),
        ({"release": 6, "version": 2, "result": {"text": "x"}}, "release 6 served it, not release 5"),
        ({"release": {"id": 5}, "version": 2, "result": {}}, "its result is empty"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_api_endpoint_checks_the_answers_schema(answer: Any, problem: str) -> None:
    found = api_endpoint.schema_problem(answer, release_id=5)
    assert found is not None
    assert problem in found


def test_api_endpoint_takes_an_answer_from_this_release() -> None:
    answer = {"release": 5, "version": 2, "result": {"text": "hi"}}
    assert api_endpoint.schema_problem(answer, release_id=5) is None


def test_monitoring_fails_when_metrics_cannot_be_fetched(closed_url: str) -> None:
    outcome = monitoring.run(ctx(release_with()))
    assert outcome.status == CheckStatus.FAIL
    assert "could not be reached" in outcome.reason


def test_monitoring_never_sends_the_metrics_token_over_plain_http_to_another_host(settings: Any) -> None:
    settings.MOC_PUBLIC_URL = "http://moc.example.internal:8000"
    settings.MOC_METRICS_TOKEN = "secret-token"

    outcome = monitoring.run(ctx(release_with()))

    assert outcome.status == CheckStatus.FAIL
    assert outcome.reason.startswith("MOC_METRICS_TOKEN not sent: MOC_PUBLIC_URL is")
    assert "secret-token" not in outcome.reason


# the inference checks' paths that need no answer


def onnx_release() -> Release:
    return ReleaseFactory(model_version=ValidVersionFactory(kind="onnx-graph", format=ModelFormat.ONNX))


# performance


def test_performance_compares_with_stables_whole_buckets_only(redis_server: Any) -> None:
    """Stable's recent figures leave out the bucket still filling and span whole buckets, so its
    requests are never divided by seconds they were not counted in."""
    stable = ReleaseFactory(state=ReleaseState.PROMOTED)
    release = ReleaseFactory(deployment=stable.deployment, previous_release=stable)
    client = redis_server.client()
    now = 1_000_003.0  # 3 s into the bucket that starts at 1_000_000
    for at, count in ((now - 1, 3), (now - 150, 10), (now - 304, 4)):
        for _ in range(count):
            figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=20, at=at)

    recent = performance._stable_recent(ctx(release), now=now)

    assert recent is not None
    assert (recent.requests, recent.seconds) == (10, performance.STABLE_WINDOW_S)
    assert performance._stable_recent(ctx(stable), now=now) is None


def test_performance_probes_stable_alongside_only_where_it_has_placements_loaded() -> None:
    release = release_with()
    stable = ReleaseFactory(
        deployment=release.deployment, model_version=release.model_version, state=ReleaseState.PROMOTED
    )
    Release.objects.filter(pk=release.pk).update(previous_release=stable)
    probe = probes.generate("Hello", 4)
    assert performance._stable_side(ctx(stable), probe) == ([], "first release: no stable release to probe")
    unloaded = PlacementFactory(version=stable.model_version, state=PlacementState.UNLOADED)
    stable.placements.add(unloaded)
    assert performance._stable_side(ctx(release), probe) == (
        [],
        f"release #{stable.pk} has nothing loaded to probe",
    )

    loaded = PlacementFactory(version=stable.model_version, state=PlacementState.LOADED)
    stable.placements.add(loaded)

    assert performance._stable_side(ctx(release), probe) == ([loaded], "")


def test_performance_does_not_probe_a_stable_version_that_answers_another_probe() -> None:
    release = release_with()
    stable = ReleaseFactory(
        deployment=release.deployment,
        model_version=ValidVersionFactory(kind="embedding", format=ModelFormat.HF),
        state=ReleaseState.PROMOTED,
    )
    stable.placements.add(PlacementFactory(version=stable.model_version, state=PlacementState.LOADED))
    Release.objects.filter(pk=release.pk).update(previous_release=stable)

    placements, why = performance._stable_side(ctx(release), probes.generate("Hello", 4))

    assert placements == []
    assert why == f"release #{stable.pk} ({stable.model_version}) answers another probe"


class ModelOnAClock:
    """A model answering each probe in the next of `seconds` (the last repeated), on a clock of its
    own that moves only while it answers: a slow model timed without waiting for it."""

    def __init__(self, *seconds: float) -> None:
        self.now = 1_000.0
        self.seconds = list(seconds)
        self.asked: list[tuple[float, float]] = []  # (sent, answered), on its clock

    def clock(self) -> float:
        return self.now

    def ask(self, version: Any, placement_id: int, probe: probes.Probe) -> tuple[dict[str, Any], float]:
        took = self.seconds.pop(0) if len(self.seconds) > 1 else self.seconds[0]
        self.asked.append((self.now, self.now + took))
        self.now += took
        return {"text": "hi"}, took * 1000


def release_and_stable(replicas: int) -> Release:
    """A release and its stable release, `replicas` loaded a side."""
    release = release_with(replicas)
    stable = ReleaseFactory(
        deployment=release.deployment,
        model_version=ValidVersionFactory(kind="causal-lm", format=ModelFormat.HF),
        state=ReleaseState.PROMOTED,
    )
    for _ in range(replicas):
        stable.placements.add(PlacementFactory(version=stable.model_version, state=PlacementState.LOADED))
    Release.objects.filter(pk=release.pk).update(previous_release=stable)
    return release


def test_performance_too_slow_to_sample_in_its_time_warns_and_stops_probing_at_the_deadline() -> None:
    """Three replicas a side at 1.7 s a probe: 2 warm-ups each and 20 timed a side are 52 probes,
    88 s, past the check's 80 s of probing. A warning saying so, not a timeout (a fail)."""
    model = ModelOnAClock(1.7)
    deadline = model.now + performance.TIMEOUT_S - performance.MARGIN_S

    outcome = performance.run(ctx(release_and_stable(3)), clock=model.clock, ask=model.ask)

    assert outcome.status == CheckStatus.WARN, outcome.reason
    assert outcome.reason.startswith(
        "too slow to judge: 17 of 20 probes a side timed in the 80 s the check has, about 1700 ms a "
        "probe; the 52 probes it takes, warm-ups of each replica included, would need about 88 s"
    )
    assert max(answered for _, answered in model.asked) <= deadline
    assert len(model.asked) == 47  # every probe that ends by the deadline, and not one more
    assert outcome.evidence["probes_timed"] == {"release": 18, "stable": 17}


def test_performance_stops_after_a_probe_that_outlasts_its_whole_time() -> None:
    model = ModelOnAClock(200.0, 0.01)

    outcome = performance.run(ctx(release_and_stable(1)), clock=model.clock, ask=model.ask)

    assert outcome.status == CheckStatus.WARN
    assert outcome.reason.startswith("too slow to judge: 0 of 20 probes a side")
    assert len(model.asked) == 1


def test_performance_judges_probes_that_fit_in_its_time() -> None:
    model = ModelOnAClock(0.01)

    outcome = performance.run(ctx(release_and_stable(3)), clock=model.clock, ask=model.ask)

    assert outcome.status == CheckStatus.PASS, outcome.reason
    assert len(model.asked) == 52
    assert outcome.evidence["release"]["probes"] == outcome.evidence["stable"]["probes"] == 20
    assert "against stable's median of 20 alternated probes" in outcome.reason


@pytest.mark.parametrize("check", [health, performance, api_endpoint])
def test_a_version_that_only_takes_raw_tensors_is_skipped_saying_why(check: Any) -> None:
    outcome = check.run(ctx(onnx_release()))
    assert outcome.status == CheckStatus.SKIP
    assert "no generic probe" in outcome.reason


def test_health_fails_a_release_without_placements() -> None:
    outcome = health.run(ctx(release_with(0)))
    assert outcome.status == CheckStatus.FAIL
    assert "no placements" in outcome.reason


def test_health_fails_naming_a_placement_that_is_not_loaded(redis_server: Any) -> None:
    release = release_with(1, state=PlacementState.UNLOADED)
    outcome = health.run(ctx(release))
    assert outcome.status == CheckStatus.FAIL
    assert outcome.reason.startswith(f"placement {release.placements.get().pk} on ")
    assert "(409)" in outcome.reason


def test_quality_skips_a_deployment_without_a_golden_set() -> None:
    outcome = quality.run(ctx(release_with()))
    assert outcome.status == CheckStatus.SKIP
    assert "no golden set" in outcome.reason


def test_quality_fails_a_malformed_golden_set() -> None:
    release = release_with(golden_set=[{"prompt": "hi", "expected": "x", "match": "regex"}])
    outcome = quality.run(ctx(release))
    assert outcome.status == CheckStatus.FAIL
    assert "item 1: match must be one of" in outcome.reason


def test_quality_skips_a_version_that_does_not_generate() -> None:
    release = ReleaseFactory(
        deployment=DeploymentFactory(golden_set=[{"prompt": "hi", "expected": "x"}]),
        model_version=ValidVersionFactory(kind="embedding", format=ModelFormat.HF),
    )
    outcome = quality.run(ctx(release))
    assert outcome.status == CheckStatus.SKIP
    assert "does not generate" in outcome.reason
