"""A deployment's traffic end to end: a real device worker (simulated GPU, thread pool) serves two
versions of the demo model, a stable release and a canary at 50%, and requests through
POST /api/v1/deployments/{name}/infer/ reach both, each key always the same one, each answer
saying which, and each leaving its figures for its release."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release
from apps.models import demo
from apps.models.models import ModelVersion
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.integration.test_serving import load, registered, serving_worker, settled  # noqa: F401
from tests.procs import Process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
P = PlacementState
PROMPT = {"prompt": "the model", "max_new_tokens": 12, "temperature": 0}


def test_a_canary_at_half_shares_traffic_with_stable_each_key_sticking_to_one_version(
    serving_worker: Callable[[], Process],  # noqa: F811
    registered: dict[str, ModelVersion],  # noqa: F811
    client_as: Callable,
) -> None:
    # given: the base model and its adapter loaded on one worker, as stable and canary (the
    # rollout engine's work, set here directly)
    serving_worker()
    operator = client_as(Role.OPERATOR)
    adapter = settled(load(operator, registered[demo.LORA]), {P.LOADED, P.FAILED})
    assert adapter.state == P.LOADED, adapter.error
    base = Placement.objects.get(pk=adapter.depends_on_id)
    deployment = Deployment.objects.create(name="traffic-itest", state=DeploymentState.ACTIVE)
    stable = Release.objects.create(
        deployment=deployment,
        model_version=registered[demo.BASE],
        state=ReleaseState.PROMOTED,
        traffic_percent=50,
    )
    stable.placements.add(base)
    canary = Release.objects.create(
        deployment=deployment,
        model_version=registered[demo.LORA],
        strategy="canary",
        state=ReleaseState.PROGRESSING,
        traffic_percent=50,
    )
    canary.placements.add(adapter)
    deployment.current_release = stable
    deployment.save(update_fields=["current_release"])

    # when: requests with a dozen keys, each asked twice
    served: dict[str, set[tuple[str, str, str]]] = {}
    for i in range(12):
        for _ in range(2):
            response = operator.post(
                f"/api/v1/deployments/{deployment.name}/infer/",
                {"task": "generate", "input": PROMPT, "key": f"user-{i}"},
                format="json",
            )
            assert response.status_code == 200, response.json()
            body = response.json()
            assert response["X-MOC-Release"] == str(body["release"]["id"])
            assert response["X-MOC-Version"] == str(body["version"]["id"])
            served.setdefault(f"user-{i}", set()).add(
                (response["X-MOC-Release"], response["X-MOC-Version"], body["result"]["text"])
            )

    # then: every key got one release, one version and (greedy) one text; both versions answered
    assert all(len(answers) == 1 for answers in served.values()), served
    releases = {release for answers in served.values() for release, _, _ in answers}
    assert releases == {str(stable.pk), str(canary.pk)}
    texts = {version: text for answers in served.values() for _, version, text in answers}
    assert set(texts) == {str(registered[demo.BASE].pk), str(registered[demo.LORA].pk)}
    assert len(set(texts.values())) == 2  # the adapter answers differently from its base
    totals = figures.totals(redis_client(), [stable.pk, canary.pk])
    by_release = {
        int(release): sum(release == r for answers in served.values() for r, _, _ in answers) * 2
        for release in releases
    }
    for release_id, total in totals.items():
        assert (total.requests, total.errors) == (by_release[release_id], 0)
        assert total.p50_ms is not None
        assert total.p50_ms > 0
