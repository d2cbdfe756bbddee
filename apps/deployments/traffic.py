"""A deployment's traffic: each request goes by the live split to stable or canary (sticky by an
optional key), to a loaded placement of that release, through the deployment's bulkhead and each
placement's circuit breaker (serving's inference does the rest), and its figures are counted per
release in Redis (apps.deployments.figures) for the canary's analysis, the page and /metrics.

Nothing on this path writes to the database but a wake. A request reads the deployment with its
stable release, its open releases, and the loaded placements of both: three queries before
serving's own. One that finds the stable release with no replica loaded (an on-demand deployment
scaled to zero) wakes the deployment (apps.deployments.wake) and is answered 503 with Retry-After
while its replicas load: a web thread does not wait for a load.

A request is counted against the release it went to unless it was refused for what the release
shares with the other side or does not control (_outcome_of): the deployment's bulkhead (429, or
the whole time spent waiting for its slot), this web process's bound on waiting requests, MOC's
Redis or broker, a task no live release answers. Input the model refused after the API's own
checks passed (the worker's bad_input: a prompt longer than its context, wrong fields) is counted
apart as rejected: mostly the caller's doing, so it is judged only beside stable's rate (a canary
that refuses what stable accepts), never against the error-rate SLO. Everything else the release
could not answer (a task it does not answer, its device's queue full, nothing loaded, its breaker
open, a timeout, an internal failure) is its error: what stable answers and the canary does not
must show in the canary's figures. Latency is measured without the wait for the bulkhead's slot,
which either side's slowness can lengthen.

After a rollback of a promoted release, traffic goes back to the previous release at once, which
may have been unloaded long ago: until a replica of it is loaded, the rolled-back release, still
loaded for its grace, answers as the "fallback" side instead of every request failing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any

import redis
from django.conf import settings
from django.db.models import QuerySet

from apps.core.models import ApiKey
from apps.core.redis_clients import shared_redis
from apps.deployments import figures, wake
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.split import CANARY, FALLBACK, STABLE, Side, Split, in_order, split_from
from apps.deployments.domain.states import RELEASE_OPEN, DeploymentState, ReleaseState
from apps.deployments.models import Deployment, KeyGrant, Release
from apps.deployments.rollout.replicas import loaded_placements
from apps.models.models import ModelVersion
from apps.serving import inference
from apps.serving.domain.errors import ErrorClass, Refusal
from apps.serving.domain.tasks import task_problem, tasks_for

__all__ = [
    "Split",
    "about",
    "bulkhead_bounds",
    "bulkhead_of",
    "deployment_limits",
    "infer",
    "key_deployments",
    "key_may_call",
    "latency_ms",
    "live_split",
    "loaded_placements",
    "not_serving",
    "nothing_live",
    "open_releases",
    "outcome_of",
    "rolled_back_to",
    "routed_deployments",
]

log = logging.getLogger(__name__)

# What a release and its version are read with: the version's serving profile gives the timeout
# and breaker thresholds.
_RELEASE_RELATED = ("model_version__model", "model_version__serving")
# Refusals that are not the release's doing, counted apart so that they judge nothing: the
# deployment's bulkhead full (429) or its slot come too late (504), MOC's Redis or broker out of
# reach; and (Refused.process_bound) this web server's bound on threads waiting on devices.
_NOT_THE_RELEASES = frozenset({Refusal.BULKHEAD_FULL, Refusal.BROKER_UNAVAILABLE})
LOADING_RETRY_S = 2


def routed_deployments() -> QuerySet[Deployment]:
    """Deployments as a request reads them: with the stable release, its version and profile."""
    return Deployment.objects.select_related(*(f"current_release__{r}" for r in _RELEASE_RELATED))


def live_split(deployment: Deployment) -> Split[Release]:
    """Who takes the deployment's traffic now (domain.split.split_from): its stable release, and
    the release rolling out with its share."""
    return split_from(deployment.current_release, open_releases([deployment.pk]))


def open_releases(deployment_ids: Collection[int]) -> QuerySet[Release]:
    """The releases still open (rolling out, or about to) of these deployments, read as a request
    reads them."""
    return Release.objects.select_related(*_RELEASE_RELATED).filter(
        deployment__in=deployment_ids, state__in=RELEASE_OPEN
    )


def infer(
    *,
    deployment: Deployment,
    task: str,
    data: dict[str, Any],
    key: str | None = None,
    release_id: int | None = None,
) -> dict[str, Any]:
    """Answer one request to the deployment: serving's answer, plus which side, release and version
    answered it. Raises inference.Refused saying why, and which release it concerns."""
    began = time.perf_counter()
    if refused := not_serving(deployment.name, deployment.state):
        raise refused
    split = live_split(deployment)
    order = _order(deployment, split, key=key, release_id=release_id)
    if not order:
        raise nothing_live(deployment.name)
    loaded = _loaded([release.pk for _, release in order])
    side, release = next(((s, r) for s, r in order if loaded.get(r.pk)), order[0])
    if not loaded.get(release.pk) and release_id is None and (found := _fallback(split)):
        (side, release), loaded = found
    version = release.model_version
    try:
        answer = _ask(deployment, release, loaded.get(release.pk, []), task, data)
    except inference.Refused as refused:
        kinds = [(r.model_version.kind, r.model_version.format) for _, r in order]
        _record(release.pk, outcome_of(refused, task, kinds), began, waited_s=refused.waited_s)
        raise about(refused, deployment.name, release.pk, side, str(version)) from None
    except Exception:
        _record(release.pk, Outcome.ERROR, began)
        raise
    _record(release.pk, Outcome.OK, began, waited_s=answer.pop("slot_wait_ms", 0.0) / 1000)
    return answer | {
        "deployment": deployment.name,
        "side": side,
        "release": {"id": release.pk, "strategy": release.strategy, "state": release.state},
        "version": {"id": version.pk, "number": version.number, "model": version.model.name},
    }


def not_serving(name: str, state: str) -> inference.Refused | None:
    """Why a deployment in `state` answers no request (409, not_serving), or None when it may."""
    if state not in (DeploymentState.PAUSED, DeploymentState.RETIRED):
        return None
    until = " until it is activated again." if state == DeploymentState.PAUSED else "."
    return inference.Refused(
        409, f"Deployment {name} is {state}: it serves no requests{until}", "not_serving"
    )


def nothing_live(name: str) -> inference.Refused:
    """The refusal of a deployment with no release live (409, not_serving)."""
    return inference.Refused(409, f"Deployment {name} serves nothing: no release is live yet.", "not_serving")


def about(
    refused: inference.Refused, name: str, release_id: int, side: Side, version: str
) -> inference.Refused:
    """The refusal, saying which deployment, release, side and version it concerns."""
    return replace(
        refused, reason=f"Deployment {name}, release #{release_id} ({side}, {version}): {refused.reason}"
    )


def _order(
    deployment: Deployment, split: Split, *, key: str | None, release_id: int | None
) -> list[tuple[Side, Release]]:
    """The releases to try, in order: the one the split (or the caller's pin) chose, then, unpinned,
    the other side should the first have nothing loaded."""
    if release_id is not None:
        return [_pinned(deployment, split, release_id)]
    return in_order(split.stable, split.canary, split.canary_percent, key, random.random())


def outcome_of(refused: inference.Refused, task: str, kinds: Iterable[tuple[str, str]]) -> Outcome:
    """How a refusal counts for the release (see the module's doc); `kinds`: the (kind, format) of
    each live release's version, which say whether any answers `task`."""
    if refused.process_bound or refused.error_class in _NOT_THE_RELEASES:
        return Outcome.REFUSED
    if refused.error_class == ErrorClass.BAD_INPUT:
        return Outcome.REJECTED
    if refused.field == "task":  # the caller's mistake when no live release answers it either
        answered = any(task in tasks_for(kind, format) for kind, format in kinds)
        return Outcome.ERROR if answered else Outcome.REFUSED
    return Outcome.ERROR


def _fallback(split: Split[Release]) -> tuple[tuple[Side, Release], dict[int, list[int]]] | None:
    """The release rolled back from being stable to `split.stable`, while it still has a loaded
    replica (its grace) and `split.stable` has none; with its loaded placements. Only a release
    that had been promoted: one rolled back before it ever served all traffic never falls back."""
    if split.stable is None:
        return None
    rolled_back = rolled_back_to([split.stable.pk]).get(split.stable.pk)
    if rolled_back is None or not (loaded := _loaded([rolled_back.pk])):
        return None
    return (FALLBACK, rolled_back), loaded


def rolled_back_to(stable_ids: Collection[int]) -> dict[int, Release]:
    """For each of these stable releases, the last release rolled back to it after it had been
    promoted (the fallback's candidate: see _fallback); in one query."""
    rows = (
        Release.objects.select_related(*_RELEASE_RELATED)
        .filter(state=ReleaseState.ROLLED_BACK, previous_release__in=stable_ids, promoted_at__isnull=False)
        .order_by("-finished_at", "-pk")
    )
    found: dict[int, Release] = {}
    for release in rows:
        assert release.previous_release_id is not None  # the filter's
        found.setdefault(release.previous_release_id, release)
    return found


def _pinned(deployment: Deployment, split: Split, release_id: int) -> tuple[Side, Release]:
    """The release a request is pinned to: the deployment's stable one or the one rolling out
    (verification probes a release before it takes traffic)."""
    if split.stable is not None and split.stable.pk == release_id:
        return STABLE, split.stable
    if split.canary is not None and split.canary.pk == release_id:
        return CANARY, split.canary
    release = (
        Release.objects.select_related(*_RELEASE_RELATED)
        .filter(deployment=deployment, pk=release_id, state__in=RELEASE_OPEN)
        .first()
    )
    if release is None:
        raise inference.Refused(
            400,
            f"Release {release_id} is neither the stable release of {deployment.name} nor one rolling "
            "out to it.",
            "invalid",
            field="release",
        )
    return CANARY, release


def _loaded(release_ids: list[int]) -> dict[int, list[int]]:
    """The loaded placements of each release, on devices that may serve."""
    rows = loaded_placements(release_ids).values_list("releases", "pk").order_by()
    out: dict[int, list[int]] = {}
    for release_id, placement_id in rows:
        out.setdefault(release_id, []).append(placement_id)
    return out


def _ask(
    deployment: Deployment, release: Release, placement_ids: list[int], task: str, data: dict[str, Any]
) -> dict[str, Any]:
    version = release.model_version
    if why := task_problem(str(version), version.kind, version.format, task):
        raise inference.Refused(400, why, "invalid", field="task")
    if not placement_ids and release.pk == deployment.current_release_id:
        raise _woken(deployment)
    if not placement_ids:
        loading = release.state == ReleaseState.LOADING
        raise inference.Refused(
            409,
            "no replica is loaded now" + ("; it is loading, try again shortly." if loading else "."),
            Refusal.NOT_LOADED,
            LOADING_RETRY_S if loading else None,
        )
    return inference.infer(
        version=version,
        task=task,
        data=data,
        placement_ids=placement_ids,
        limits=deployment_limits(deployment, version),
        bulkhead=bulkhead_of(deployment.pk),
    )


def _woken(deployment: Deployment) -> inference.Refused:
    """The refusal of a request that found the stable release with no replica loaded (scaled to
    zero, or lost): it wakes the deployment (apps.deployments.wake: one load however many ask) and
    says to try again shortly (503, Retry-After) rather than wait for the load in a web thread, as
    /v1/ does; or, when it cannot be woken, why not."""
    waking = wake.wake(deployment.pk)
    if waking.state == "refused":
        return inference.Refused(503, waking.reason, Refusal.NOT_LOADED, waking.retry_after_s)
    return inference.Refused(
        503,
        "no replica is loaded now: waking, its replicas are loading; try again shortly.",
        Refusal.NOT_LOADED,
        LOADING_RETRY_S,
    )


def deployment_limits(deployment: Deployment, version: ModelVersion) -> inference.Limits:
    """A request's limits: the version's time and breaker (inference.limits_for), the deployment's
    bulkhead (its own bounds, else the serving defaults)."""
    concurrency, queue = bulkhead_bounds(deployment)
    return replace(inference.limits_for(version), concurrency=concurrency, queue=queue)


def bulkhead_bounds(deployment: Deployment) -> tuple[int, int]:
    """The deployment's bulkhead, (concurrency, queue): its own bounds, else the serving defaults."""
    return (
        deployment.max_concurrency or settings.MOC_SERVING_CONCURRENCY,
        settings.MOC_SERVING_QUEUE if deployment.max_queue is None else deployment.max_queue,
    )


def bulkhead_of(deployment_id: int) -> str:
    """The name the deployment's bulkhead is kept under in Redis, by every process and path."""
    return f"deployment {deployment_id}"


def key_deployments(key: ApiKey) -> frozenset[int] | None:
    """The deployments `key` may call (on /v1/ and the deployment endpoint): the ones granted to
    it once it is limited (a key is from its first grant on, for good: taking its grants back
    leaves it calling none), else None, every deployment its role may. A key with a grant is
    limited even should its flag not say so (a grant made around key_grant_create)."""
    granted = frozenset(KeyGrant.objects.filter(key=key).values_list("deployment_id", flat=True))
    return granted if key.limited or granted else None


def key_may_call(key: ApiKey, deployment_id: int) -> bool:
    """Whether `key` may call the deployment (key_deployments)."""
    allowed = key_deployments(key)
    return allowed is None or deployment_id in allowed


def latency_ms(began: float, waited_s: float = 0.0) -> float:
    """A request's latency as its release is judged by, from `began` (time.perf_counter()) to now,
    less `waited_s` for the bulkhead's slot, which either side's slowness can lengthen."""
    return max(0.0, time.perf_counter() - began - waited_s) * 1000


def _record(release_id: int, outcome: Outcome, began: float, *, waited_s: float = 0.0) -> None:
    """Count the request for its release, its latency_ms; an answer is never lost to Redis
    failing here."""
    try:
        figures.record(
            shared_redis(), release_id=release_id, outcome=outcome, latency_ms=latency_ms(began, waited_s)
        )
    except redis.RedisError as exc:
        log.warning("figures of release %s not recorded: %s", release_id, exc)
