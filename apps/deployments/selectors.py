"""Reads of deployments, releases and verification, for the API, the pages and the Overview."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.urls import reverse

from apps.deployments import figures, rollup
from apps.deployments.domain import anomaly
from apps.deployments.domain.figures import Figures, summed
from apps.deployments.domain.series import Point, coarsen, point_of
from apps.deployments.domain.split import Split, split_from
from apps.deployments.domain.states import RELEASE_OPEN, DeploymentState
from apps.deployments.models import (
    CheckResult,
    Deployment,
    KeyGrant,
    Release,
    ReleaseEvent,
    ServingMinute,
    VerificationRun,
)

# The list's figures cover the last minute. The deployment page charts the releases live now or
# ended in the last CHART_WINDOW_S (charted), its live charts over the last LIVE_WINDOW_S (longer
# ranges are drawn from the per-minute rollup).
LIST_WINDOW_S = 60
CHART_WINDOW_S = 600
LIVE_WINDOW_S = 900
# The deployment page shows this many of the latest releases (the API pages through all of them).
TIMELINE_RELEASES = 20
# ...and the verification runs of this many of the latest releases.
VERIFICATION_RUNS = 5


def _open_releases() -> Prefetch:
    """A deployment's release in progress (at most one), as `open_releases`."""
    return Prefetch(
        "releases",
        queryset=Release.objects.filter(state__in=RELEASE_OPEN).select_related("model_version__model"),
        to_attr="open_releases",
    )


def deployment_list() -> QuerySet[Deployment]:
    # Meta.ordering is dropped by the GROUP BY of the count, so the order is given again.
    return (
        Deployment.objects.select_related(
            "registered_model", "current_release__model_version__model", "created_by", "owner", "device"
        )
        .prefetch_related(_open_releases())
        .annotate(release_count=Count("releases"))
        .order_by("name")
    )


# Ids are bigint: a longer run of digits names no deployment.
_MAX_ID = 2**63 - 1


def deployment_by_ref(queryset: QuerySet[Deployment], ref: str) -> Deployment:
    """A deployment by its id (ASCII digits) or its name (which starts with a letter);
    DoesNotExist if none."""
    if not (ref.isascii() and ref.isdigit()):
        return queryset.get(name=ref)
    if int(ref) > _MAX_ID:
        raise Deployment.DoesNotExist(f"No deployment has id {ref}.")
    return queryset.get(pk=int(ref))


def _open_releases_of(deployment: Deployment) -> list[Release]:
    """The deployment's open releases (from deployment_list's prefetch, else one query)."""
    releases = getattr(deployment, "open_releases", None)
    if releases is None:
        releases = list(
            deployment.releases.filter(state__in=RELEASE_OPEN).select_related("model_version__model")
        )
    return releases


def open_release(deployment: Deployment) -> Release | None:
    """The release rolling out to the deployment now, if any (from deployment_list's prefetch)."""
    releases = _open_releases_of(deployment)
    return releases[0] if releases else None


def live_releases(deployment: Deployment) -> list[Release]:
    """The releases that may take traffic now: the stable one and the one rolling out."""
    return [r for r in (deployment.current_release, open_release(deployment)) if r is not None]


def split_of(deployment: Deployment) -> Split[Release]:
    """The split from deployment_list's prefetch, without a query: the same rule (split_from) as
    apps.deployments.traffic.live_split, which the request path reads fresh."""
    return split_from(deployment.current_release, _open_releases_of(deployment))


def release_list() -> QuerySet[Release]:
    return Release.objects.select_related(
        "deployment",
        "model_version__model",
        "created_by",
        "previous_release__model_version__model",
        "gate_overridden_by",
    ).prefetch_related("placements")


def release_event_list() -> QuerySet[ReleaseEvent]:
    return ReleaseEvent.objects.select_related("actor").order_by("at", "id")


def release_timeline(*, deployment: Deployment) -> list[Release]:
    """The deployment's latest releases, newest first, each with its events (oldest first): which
    version served when, who released it and how it ended."""
    return list(
        release_list()
        .filter(deployment=deployment)
        .prefetch_related(Prefetch("events", queryset=release_event_list()))[:TIMELINE_RELEASES]
    )


def verification_run_list() -> QuerySet[VerificationRun]:
    return VerificationRun.objects.select_related(
        "release__deployment", "release__model_version__model"
    ).prefetch_related(Prefetch("checks", queryset=CheckResult.objects.order_by("id")))


def check_result_list() -> QuerySet[CheckResult]:
    return CheckResult.objects.select_related("run__release__deployment")


def verification_runs(*, deployment: Deployment) -> list[VerificationRun]:
    """The verification runs of the deployment's latest releases, newest first, with their checks."""
    return list(
        verification_run_list()
        .filter(release__deployment=deployment)
        .order_by("-created_at", "-id")[:VERIFICATION_RUNS]
    )


def charted(now: datetime) -> Q:
    """Releases whose figures are shown (the deployment page's charts, /metrics): open or stable
    now, ended inside the chart's window (an aborted canary's last minutes stay visible beside
    stable), or kept loaded for a blue-green window."""
    since = now - timedelta(seconds=CHART_WINDOW_S)
    return (
        Q(state__in=RELEASE_OPEN)
        | Q(deployment__current_release=F("pk"))
        | Q(finished_at__gte=since)
        | Q(previous_kept_until__gte=now)
    )


def chart_releases(*, deployment: Deployment, now: datetime) -> list[Release]:
    """The releases the deployment page charts (`charted`)."""
    return list(
        Release.objects.filter(deployment=deployment)
        .filter(charted(now))
        .select_related("deployment", "model_version__model")
        .order_by("created_at", "id")
    )


@dataclass(frozen=True, slots=True)
class Recent:
    """A deployment's request figures over the last minute, all its live releases together."""

    rps: float | None
    p99_ms: float | None
    error_rate: float | None
    requests: int

    @property
    def error_percent(self) -> float | None:
        return None if self.error_rate is None else self.error_rate * 100


def recent_figures(
    client: redis.Redis, deployments: list[Deployment], *, now: float, window_s: int = LIST_WINDOW_S
) -> dict[int, Recent]:
    """Each deployment's figures over the last `window_s` seconds (the whole 5-second buckets
    that cover them, figures.complete_span), in one Redis round trip."""
    ids = {d.pk: [r.pk for r in live_releases(d)] for d in deployments}
    _, totals, span = figures.recent(
        client, [rid for rids in ids.values() for rid in rids], seconds=window_s, now=now
    )
    out = {}
    for deployment_id, release_ids in ids.items():
        total = summed((totals[rid] for rid in release_ids), seconds=span)
        out[deployment_id] = Recent(
            rps=total.rps if total.requests else None,
            p99_ms=total.p99_ms,
            error_rate=total.error_rate,
            requests=total.requests,
        )
    return out


def _points(release: Release, buckets: list[tuple[int, Figures]]) -> list[Point]:
    return [point_of(f, t=start, slo_p99_ms=release.deployment.slo_p99_ms) for start, f in buckets]


def live_points(
    client: redis.Redis, releases: list[Release], *, since: float, until: float
) -> dict[int, list[Point]]:
    """Each release's 5-second points from `since` to `until`, in one Redis round trip (goodput
    against its deployment's SLO)."""
    buckets = figures.series(client, [r.pk for r in releases], since=since, until=until)
    return {r.pk: _points(r, buckets[r.pk]) for r in releases}


def recent_points(
    client: redis.Redis, releases: list[Release], *, seconds: float, now: float
) -> tuple[dict[int, list[Point]], dict[int, Point], int, int]:
    """Each release's 5-second points over figures.complete_span(seconds, now) and their total,
    in one Redis round trip; with the span's start and its seconds."""
    buckets, totals, span = figures.recent(client, [r.pk for r in releases], seconds=seconds, now=now)
    since = figures.complete_span(seconds, now)[0]
    return (
        {r.pk: _points(r, buckets[r.pk]) for r in releases},
        {r.pk: point_of(totals[r.pk], t=since, slo_p99_ms=r.deployment.slo_p99_ms) for r in releases},
        since,
        span,
    )


def release_label(release: Release) -> str:
    return f"{release.model_version} (#{release.pk})"


def chart_series(
    client: redis.Redis, releases: list[Release], *, since: float, until: float
) -> list[dict[str, Any]]:
    """The releases' 5-second figures from `since` to `until`, as the deployment page's charts take
    them, in one Redis round trip: per release, its points (series.Point.to_dict)."""
    points = live_points(client, releases, since=since, until=until)
    return [
        {"id": r.pk, "label": release_label(r), "points": [p.to_dict() for p in points[r.pk]]}
        for r in releases
    ]


def minute_history(
    *, deployment: Deployment, since: datetime
) -> tuple[list[Release], dict[int, list[Point]]]:
    """The deployment's per-minute points since `since`, per release that has any (oldest
    first), from the rollup."""
    rows = ServingMinute.objects.filter(deployment=deployment, minute__gte=since).order_by("minute")
    points: dict[int, list[Point]] = {}
    for row in rows:
        points.setdefault(row.release_id, []).append(rollup.point_of_row(row))
    releases = list(
        Release.objects.filter(pk__in=points)
        .select_related("deployment", "model_version__model")
        .order_by("created_at", "id")
    )
    return releases, points


def serving_anomalies(*, deployment: Deployment, now: float) -> list[anomaly.Anomaly]:
    """The deployment's figures that drifted from their own recent baseline (domain.anomaly),
    judged over its rolled-up minutes, all its releases together."""
    rule = anomaly.Rule()
    end = rollup.last_complete_minute_end(now)
    since = datetime.fromtimestamp(end - rule.recent_s - rule.baseline_s, tz=UTC)
    rows = ServingMinute.objects.filter(deployment=deployment, minute__gte=since)
    minutes = coarsen((rollup.point_of_row(row) for row in rows), 60)
    return anomaly.anomalies(minutes, now=end, rule=rule)


def overview_cards() -> list[dict]:
    counts = Deployment.objects.aggregate(
        active=Count("pk", filter=Q(state=DeploymentState.ACTIVE)),
        paused=Count("pk", filter=Q(state=DeploymentState.PAUSED)),
        draft=Count("pk", filter=Q(state=DeploymentState.DRAFT)),
    )
    in_progress = Release.objects.filter(state__in=RELEASE_OPEN).count()
    return [
        {
            "label": "Deployments active",
            "value": counts["active"],
            "url": reverse("deployments:list"),
            "hint": f"{counts['paused']} paused · {counts['draft']} draft · "
            f"{in_progress} release{'s' if in_progress != 1 else ''} in progress",
        }
    ]


def key_grant_list() -> QuerySet[KeyGrant]:
    """API keys' grants to call deployments, with their keys' owners."""
    return KeyGrant.objects.select_related("key__owner", "deployment").order_by(
        "deployment__name", "key__name"
    )
