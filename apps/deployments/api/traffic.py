"""A deployment's public endpoint (POST .../infer/) and its request and serving figures per release
(GET .../figures/: live, or history from the per-minute rollup), with the figures that drifted."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.models import ApiKey
from apps.core.redis_clients import redis_client
from apps.deployments import figures, selectors, traffic
from apps.deployments.domain.series import Point, coarsen, merged
from apps.deployments.models import Deployment, Release
from apps.fleet.domain.history import RANGES_S, bucket_for
from apps.serving import inference
from apps.serving.api import serializers as serving
from apps.serving.api.views import refusal_response
from apps.serving.models import Placement

# How far back the figures reach: the chart buckets live this long in Redis.
MAX_SECONDS = figures.BUCKET_TTL_S


class DeploymentInferInput(serving.InferenceInput):
    """Serving's request (task, input), sent to whichever release the split picks."""

    placement = None  # the deployment picks the placement
    key = serializers.CharField(
        required=False,
        max_length=256,
        help_text="Sticky routing: requests with the same key go to the same side of the split",
    )
    release = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        help_text="Only this release (the stable one or the one rolling out), whatever the split",
    )


class _ReleaseRef(serializers.Serializer):
    id = serializers.IntegerField()
    strategy = serializers.CharField()
    state = serializers.CharField()


class _VersionRef(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    model = serializers.CharField(help_text="The registered model's name")


class DeploymentInferOutput(serving.InferenceOutput):
    deployment = serializers.CharField()
    side = serializers.ChoiceField(
        choices=["stable", "canary", "fallback"],
        help_text="Which side of the split answered; fallback: the release just rolled back from "
        "stable, answering while the release traffic went back to has nothing loaded yet",
    )
    release = _ReleaseRef()
    version = _VersionRef()


def _deployment(ref: str, queryset: QuerySet[Deployment]) -> Deployment:
    try:
        return selectors.deployment_by_ref(queryset, ref)
    except Deployment.DoesNotExist:
        raise Http404 from None


class DeploymentInferView(APIView):
    """Ask a deployment: the request goes by the live split to its stable release or its canary
    (the same `key` always to the same side), to a loaded placement of that release, through the
    deployment's bulkhead (429 with Retry-After when full) and the placement's circuit breaker
    (open: 503). The answer says which release and version served it, also in the X-MOC-Release
    and X-MOC-Version headers (side `fallback`: a release just rolled back, answering while the
    one traffic went back to has no replica loaded yet); refusals say which release they concern.
    409: the deployment is paused or retired, has no live release, or the release has no replica
    loaded; 400: input the version does not take, or a `release` that is neither stable nor
    rolling out, naming the field. 404 for an API key limited to other deployments (its grants:
    traffic.key_may_call), as /v1/ answers it: a deployment it may not call is one it cannot see."""

    queryset = Placement.objects.all()  # as serving's InferenceView: operators and admins may ask

    @extend_schema(
        request=DeploymentInferInput,
        responses={
            200: DeploymentInferOutput,
            400: OpenApiResponse(serving.ErrorBody, description="Bad input or release; `fields` names it"),
            404: OpenApiResponse(
                serving.ErrorBody, description="No such deployment, or one this API key may not call"
            ),
            409: OpenApiResponse(
                serving.ErrorBody,
                description="Paused or retired, nothing live, or a release pinned by `release` with no "
                "replica loaded (Retry-After while loading)",
            ),
            429: OpenApiResponse(
                serving.ErrorBody, description="The deployment's bulkhead is full; see Retry-After"
            ),
            503: OpenApiResponse(
                serving.ErrorBody,
                description="Circuit breaker open, worker lost or busy, the broker unreachable, or a "
                "sleeping deployment waking (its replicas are loading; Retry-After) or unable to wake "
                "(the scheduler's reason)",
            ),
            504: OpenApiResponse(serving.ErrorBody, description="No answer within the request's time limit"),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        deployment = _deployment(name, traffic.routed_deployments())
        if isinstance(request.auth, ApiKey) and not traffic.key_may_call(request.auth, deployment.pk):
            raise NotFound(f"Deployment '{name}' does not exist or this API key may not call it.")
        data = DeploymentInferInput(data=request.data)
        data.is_valid(raise_exception=True)
        ask = data.validated_data
        try:
            answer = traffic.infer(
                deployment=deployment,
                task=ask["task"],
                data=ask["input"],
                key=ask.get("key"),
                release_id=ask.get("release"),
            )
        except inference.Refused as refused:
            return refusal_response(refused)
        headers = {
            "X-MOC-Release": str(answer["release"]["id"]),
            "X-MOC-Version": str(answer["version"]["id"]),
        }
        return Response(DeploymentInferOutput(answer).data, headers=headers)


# The ranges drawn from the live buckets in Redis; longer ones from the per-minute rollup.
LIVE_RANGES = ("15m",)


class FiguresInput(serializers.Serializer):
    seconds = serializers.IntegerField(min_value=5, max_value=MAX_SECONDS, default=300)
    range = serializers.ChoiceField(
        choices=sorted(RANGES_S, key=RANGES_S.__getitem__),
        required=False,
        help_text="A history range instead of `seconds`: 15m from the live 5-second buckets, "
        "longer ones from the per-minute rollup in coarser steps",
    )


class _Refusals(serializers.DictField):
    child = serializers.IntegerField()


class FiguresSerializer(serializers.Serializer):
    requests = serializers.IntegerField(help_text="Answered or failed")
    errors = serializers.IntegerField()
    refused = serializers.IntegerField(
        help_text="The deployment's bulkhead full, this web server's bound on waiting requests, MOC's "
        "Redis or broker away: not counted as the release's"
    )
    refusals = _Refusals(help_text="Refused requests by reason, where the reason was given")
    rejected = serializers.IntegerField(
        help_text="Input the model refused: judged only against stable's rate, never the error-rate SLO"
    )
    rps = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField(allow_null=True)
    good = serializers.IntegerField(
        help_text="Answered within the deployment's p99 SLO (all answered ones without one), estimated "
        "from the latency buckets"
    )
    goodput = serializers.FloatField(allow_null=True, help_text="Good requests per second")
    tokens_out = serializers.IntegerField(help_text="Output tokens generated")
    tokens_per_s = serializers.FloatField(allow_null=True)
    ttft_p50_ms = serializers.FloatField(allow_null=True, help_text="Time to first token")
    ttft_p99_ms = serializers.FloatField(allow_null=True)
    itl_p50_ms = serializers.FloatField(
        allow_null=True, help_text="Inter-token latency (each request's mean gap between tokens)"
    )
    itl_p99_ms = serializers.FloatField(allow_null=True)
    queue_p50_ms = serializers.FloatField(allow_null=True, help_text="Wait before a worker took it")
    queue_p99_ms = serializers.FloatField(allow_null=True)


class BucketSerializer(FiguresSerializer):
    t = serializers.IntegerField(help_text="The bucket's start, Unix seconds")


class ReleaseFiguresSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    side = serializers.ChoiceField(
        choices=["stable", "canary"], allow_null=True, help_text="Null: it no longer takes traffic"
    )
    state = serializers.CharField()
    traffic_percent = serializers.IntegerField()
    version = _VersionRef()
    totals = FiguresSerializer(help_text="Over the whole span")
    series = BucketSerializer(many=True)


class AnomalySerializer(serializers.Serializer):
    figure = serializers.CharField(help_text="Which figure moved: rps, error_rate, p99_ms, ttft_p99_ms, ...")
    direction = serializers.ChoiceField(choices=["up", "down"])
    recent = serializers.FloatField(help_text="Its median over the last minutes")
    baseline = serializers.FloatField(help_text="Its median over the hour before")
    mad = serializers.FloatField(help_text="The baseline's median absolute deviation")
    score = serializers.FloatField(
        allow_null=True, help_text="Scaled MADs from the baseline; null when the baseline did not vary"
    )
    change = serializers.FloatField(allow_null=True, help_text="Relative to the baseline's median")
    reason = serializers.CharField()


class DeploymentFiguresSerializer(serializers.Serializer):
    deployment = serializers.CharField()
    range = serializers.CharField(allow_null=True, help_text="The range asked for, if any")
    seconds = serializers.IntegerField(
        help_text="The span covered: the whole buckets nearest the span asked for, up to the one "
        "still filling (left out, so that rates are not diluted by seconds yet to come)"
    )
    bucket_s = serializers.IntegerField(help_text="Each point's span: 5 s live, 60 s or more in history")
    releases = ReleaseFiguresSerializer(many=True)
    anomalies = AnomalySerializer(
        many=True,
        help_text="Figures whose last minutes drifted from their own baseline (the page's badge)",
    )


class DeploymentFiguresView(APIView):
    """The deployment's request and serving figures per release (stable, canary, and those that
    ended in the last minutes): requests, errors, refusals by reason, latency, time to first
    token, inter-token latency, queue wait (p50, p99), output tokens, goodput; per point and over
    the span. Live over the last `seconds` in 5-second buckets, or over a `range`: 15m live, 1h
    to 7d from the per-minute rollup (in steps of 1 to 30 minutes). With `anomalies`: the figures
    that drifted from their own recent baseline. 400 naming `range` or `seconds` for a bad one."""

    queryset = Deployment.objects.all()  # viewers may read it

    @extend_schema(
        parameters=[
            OpenApiParameter("seconds", int, description=f"The span, 5 to {MAX_SECONDS}; default 300"),
            OpenApiParameter(
                "range",
                str,
                enum=sorted(RANGES_S, key=RANGES_S.__getitem__),
                description="History instead of `seconds`: 15m live, 1h, 6h, 24h or 7d from the rollup",
            ),
        ],
        responses=DeploymentFiguresSerializer,
    )
    def get(self, request: Request, name: str) -> Response:
        deployment = _deployment(name, selectors.deployment_list())
        params = FiguresInput(data=request.query_params)
        params.is_valid(raise_exception=True)
        chosen = params.validated_data.get("range")
        now = time.time()
        split = selectors.split_of(deployment)
        if chosen is None or chosen in LIVE_RANGES:
            seconds = RANGES_S[chosen] if chosen else params.validated_data["seconds"]
            releases = selectors.chart_releases(deployment=deployment, now=timezone.now())
            series, totals, since, span = selectors.recent_points(
                redis_client(), releases, seconds=seconds, now=now
            )
            step = figures.BUCKET_S
        else:
            span = RANGES_S[chosen]
            since = int(now) - span
            releases, minutes = selectors.minute_history(
                deployment=deployment, since=datetime.fromtimestamp(since, tz=UTC)
            )
            step = bucket_for(timedelta(seconds=span), finest_s=60)
            series = {rid: coarsen(parts, step) for rid, parts in minutes.items()}
            totals = {rid: merged(parts, t=since, seconds=span) for rid, parts in minutes.items()}
        body = {
            "deployment": deployment.name,
            "range": chosen,
            "seconds": span,
            "bucket_s": step,
            "releases": [_release_figures(r, split, series[r.pk], totals[r.pk]) for r in releases],
            "anomalies": [a.to_dict() for a in selectors.serving_anomalies(deployment=deployment, now=now)],
        }
        return Response(DeploymentFiguresSerializer(body).data)


def _release_figures(
    release: Release, split: selectors.Split[Release], points: list[Point], total: Point
) -> dict[str, Any]:
    side = "stable" if release == split.stable else "canary" if release == split.canary else None
    version = release.model_version
    return {
        "id": release.pk,
        "side": side,
        "state": release.state,
        "traffic_percent": (100 - split.canary_percent) if side == "stable" else release.traffic_percent,
        "version": {"id": version.pk, "number": version.number, "model": version.model.name},
        "totals": total.to_dict(),
        "series": [p.to_dict() for p in points],
    }
