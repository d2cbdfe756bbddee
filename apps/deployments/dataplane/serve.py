"""One data-plane request, after its caller is known: the deployment it names (routes.py), its
body parsed into the worker's params (domain.openai), the side of the live split that takes it
(the rules of apps.deployments.traffic: the split, sticky by the call's `user`, the other side
when the first has nothing loaded, the fallback after a rollback), a wake when nothing is loaded
(waking.py), then serving's asynchronous flow (apps.serving.inference.aio: the deployment's
bulkhead, the placements' breakers, the direct channel), the answer shaped as OpenAI's, and the
request counted for its release (apps.deployments.figures, by traffic's rules, in a batch: counting.py).

A streamed answer starts only once its first frame came: a refusal before it is an ordinary JSON
error with its status; after it, an error event and then `[DONE]`. Counting the figures happens
off the request path (in process, written in batches), never delaying an answer.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from apps.deployments import traffic
from apps.deployments.dataplane import clients, counting, routes, waking
from apps.deployments.dataplane.auth import Caller
from apps.deployments.dataplane.routes import Route, Side
from apps.deployments.domain import openai
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.split import FALLBACK, in_order
from apps.deployments.domain.split import Side as SideName
from apps.serving.domain import wire
from apps.serving.domain.errors import Refusal
from apps.serving.domain.tasks import EMBED, GENERATE, task_problem
from apps.serving.inference import aio
from apps.serving.inference.refusals import BROKER_RETRY_S, Refused

log = logging.getLogger(__name__)

Headers = tuple[tuple[str, str], ...]
# Retry-After for a 429 or 503 whose refusal named no time: one the SDKs' retries can use.
_RETRY_S = {429: 1, 503: BROKER_RETRY_S}


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer."""

    status: int
    body: dict[str, Any]
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Stream:
    """A streamed answer: server-sent events, each item one or more whole events."""

    headers: Headers
    events: AsyncGenerator[bytes, None]


def error(err: openai.ApiError, headers: Headers = ()) -> Answer:
    """An error in OpenAI's shape, with Retry-After on a 429 or 503."""
    retry = err.retry_after_s if err.retry_after_s is not None else _RETRY_S.get(err.status)
    extra = (("retry-after", str(retry)),) if retry is not None else ()
    return Answer(err.status, err.body(), (*headers, *extra))


async def models(caller: Caller) -> Answer:
    """GET /v1/models: the deployments the key may call."""
    _may_infer(caller)
    listed = [_entry(r) for r in await routes.routes() if caller.may_call(r.deployment_id)]
    return Answer(200, openai.models(listed))


async def model(caller: Caller, name: str) -> Answer:
    """GET /v1/models/{name}."""
    _may_infer(caller)
    return Answer(200, openai.model(_entry(await _visible(caller, name))))


async def infer(caller: Caller, body: dict[str, Any], op: wire.Op) -> Answer | Stream:
    """POST /v1/completions (COMPLETE), /v1/chat/completions (CHAT), /v1/embeddings (EMBED)."""
    _may_infer(caller)
    name = body.get("model")
    route = await _visible(caller, name) if isinstance(name, str) and name else None
    call = _parse(op, body, route)
    assert route is not None  # without a model named, parsing refused the body
    if refused := traffic.not_serving(route.name, route.state):
        raise _api_error(refused)
    draw = random.random()
    picked = _pick(route, call.user, draw)
    if picked is None:
        raise _api_error(traffic.nothing_live(route.name))
    side_name, side = picked
    task = EMBED if op == wire.Op.EMBED else GENERATE
    if why := task_problem(side.version_label, side.kind, side.format, task):
        return _refused(Refused(400, why, "invalid", field="task"), route, side_name, side, task=task)
    if not side.targets:
        try:
            route = await waking.until_loaded(route)
        except Refused as unwoken:
            # Not the release's failure: what stopped the wake (no room, its time up) is counted apart.
            return _refused(unwoken, route, side_name, side, task=task, outcome=Outcome.REFUSED)
        side_name, side = _pick(route, call.user, draw) or (side_name, side)
        if not side.targets:
            absent = Refused(503, "no replica is loaded now.", Refusal.NOT_LOADED, traffic.LOADING_RETRY_S)
            return _refused(absent, route, side_name, side, task=task, outcome=Outcome.REFUSED)
    return await _serve(route, side_name, side, op, call, task)


# --- the request's steps ---------------------------------------------------------------------


def _may_infer(caller: Caller) -> None:
    if not caller.may_infer:
        raise openai.ApiError(
            403,
            "This API key may not call deployments: that takes the operator role, for the key and its owner.",
            code="insufficient_permissions",
        )


async def _visible(caller: Caller, name: str) -> Route:
    """The deployment `name`, if the key may call it: else 404, as OpenAI hides a model the key
    cannot see. A retired deployment is listed no more, but asking it says why it will not answer."""
    route = await routes.route(name)
    if route is None or not caller.may_call(route.deployment_id):
        raise openai.ApiError(
            404,
            f"The model '{name}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return route


def _parse(op: wire.Op, body: dict[str, Any], route: Route | None) -> Any:
    length = route.max_model_len if route else None
    if op == wire.Op.COMPLETE:
        return openai.parse_completion(body, max_model_len=length)
    if op == wire.Op.CHAT:
        return openai.parse_chat(body, max_model_len=length)
    return openai.parse_embeddings(body)


def _pick(route: Route, key: str | None, draw: float) -> tuple[SideName, Side] | None:
    """The side that takes the request (traffic's rules): the split's choice, the other side when
    it has nothing loaded, the fallback when neither has; else the split's choice, to wake."""
    order = in_order(route.stable, route.canary, route.canary_percent, key, draw)
    if not order:
        return None
    for side_name, side in order:
        if side.targets:
            return side_name, side
    if route.fallback is not None:
        return FALLBACK, route.fallback
    return order[0]


async def _serve(
    route: Route, side_name: SideName, side: Side, op: wire.Op, call: Any, task: str
) -> Answer | Stream:
    headers = _headers(route, side_name, side)
    streaming = op != wire.Op.EMBED and call.stream
    began = time.perf_counter()
    frames = aio.stream(
        client=clients.redis(),
        version_id=side.version_id,
        version_label=side.version_label,
        targets=side.targets,
        op=op,
        params=call.params,
        stream=streaming,
        limits=side.limits,
        bulkhead=traffic.bulkhead_of(route.deployment_id),
        release_id=side.release_id,
        deployment_id=route.deployment_id,
    )
    try:
        first = await anext(frames)
        if not streaming and first["k"] != wire.Kind.DONE.value:
            raise RuntimeError(f"a {first['k']} frame where the done frame was due")
    except Refused as refused:
        await frames.aclose()
        return _refused(refused, route, side_name, side, task=task, began=began)
    except BaseException:
        await frames.aclose()
        raise
    done = _Done(route, side_name, side, began)
    if not streaming:
        await frames.aclose()
        done.counted(first)
        return Answer(200, _shaped(op, call, route.name, first["result"]), headers)
    streamer = _streamer(op, call, route.name)
    # A chat's role chunks come first, as OpenAI sends them.
    opening = streamer.start(call.params["n"]) if isinstance(streamer, openai.ChatStream) else []
    events = _events(_joined(opening), first, frames, streamer, done, task)
    return Stream((*headers, ("content-type", "text/event-stream"), *_SSE_HEADERS), events)


_SSE_HEADERS = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))


class _Done:
    """Counts a request for its release once it ended (counting.py, off the request path)."""

    def __init__(self, route: Route, side_name: SideName, side: Side, began: float) -> None:
        self.route, self.side_name, self.side, self.began = route, side_name, side, began

    def counted(self, frame: dict[str, Any]) -> None:
        f = frame.get("figures") or {}
        waited_s = float(f.get("slot_wait_ms") or 0.0) / 1000
        _count(
            self.side.release_id,
            Outcome.OK,
            self.began,
            waited_s=waited_s,
            ttft_ms=f.get("ttft_ms"),
            itl_ms=f.get("itl_ms"),
            tokens_out=int(f.get("tokens_out") or 0),
            queue_ms=f.get("queue_ms"),
        )

    def refused(self, refused: Refused, task: str, outcome: Outcome | None = None) -> openai.ApiError:
        _count(
            self.side.release_id,
            outcome or _outcome(refused, task, self.route),
            self.began,
            waited_s=refused.waited_s,
            refusal=refused.error_class or "refused",
        )
        return _api_error(
            traffic.about(
                refused, self.route.name, self.side.release_id, self.side_name, self.side.version_label
            )
        )


def _refused(
    refused: Refused,
    route: Route,
    side_name: SideName,
    side: Side,
    *,
    task: str,
    began: float | None = None,
    outcome: Outcome | None = None,
) -> Answer:
    """The JSON error of a refusal that concerns a release, counted for it."""
    done = _Done(route, side_name, side, time.perf_counter() if began is None else began)
    return error(done.refused(refused, task, outcome), _headers(route, side_name, side))


async def _events(
    opening: bytes,
    first: dict[str, Any],
    frames: AsyncGenerator[dict[str, Any], None],
    streamer: Any,
    done: _Done,
    task: str,
) -> AsyncGenerator[bytes, None]:
    """The stream's events: `opening`, the chunks of each delta frame (one item per frame), the end
    chunks from the done frame (finish reasons, usage), then [DONE]; a refusal after the first
    frame is an error event then [DONE]. Closing it (the client left) closes `frames`, which gives
    back the request's slot."""
    frame = first
    try:
        if opening:
            yield opening
        while frame["k"] != wire.Kind.DONE.value:
            yield _joined(streamer.chunks(frame))
            frame = await anext(frames)
        done.counted(frame)
        yield _joined(streamer.end(frame["result"]))
    except Refused as refused:
        yield openai.error_event(done.refused(refused, task))
    except Exception:  # a worker frame out of shape, or the flow ending without its done frame
        log.exception("stream of %s broke", done.route.name)
        yield openai.error_event(openai.ApiError(500, "The server had an error while streaming the answer."))
    finally:
        await frames.aclose()
    yield openai.DONE


def _joined(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(openai.sse(c) for c in chunks)


def _shaped(op: wire.Op, call: Any, name: str, result: dict[str, Any]) -> dict[str, Any]:
    created = int(time.time())
    if op == wire.Op.COMPLETE:
        return openai.completion(
            f"cmpl-{uuid.uuid4().hex}", created, name, result, echo=call.echo, logprobs=call.logprobs
        )
    if op == wire.Op.CHAT:
        return openai.chat(f"chatcmpl-{uuid.uuid4().hex}", created, name, result, logprobs=call.logprobs)
    return openai.embeddings(name, result, call.encoding_format)


def _streamer(op: wire.Op, call: Any, name: str) -> Any:
    created = int(time.time())
    if op == wire.Op.COMPLETE:
        return openai.CompletionStream(
            f"cmpl-{uuid.uuid4().hex}",
            created,
            name,
            logprobs=call.logprobs,
            include_usage=call.include_usage,
        )
    return openai.ChatStream(
        f"chatcmpl-{uuid.uuid4().hex}",
        created,
        name,
        logprobs=call.logprobs,
        include_usage=call.include_usage,
    )


def _headers(route: Route, side_name: SideName, side: Side) -> Headers:
    return (
        ("x-moc-deployment", route.name),
        ("x-moc-release", str(side.release_id)),
        ("x-moc-version", str(side.version_id)),
        ("x-moc-side", side_name),
    )


def _outcome(refused: Refused, task: str, route: Route) -> Outcome:
    sides = [s for s in (route.stable, route.canary) if s is not None]
    return traffic.outcome_of(refused, task, [(s.kind, s.format) for s in sides])


def _api_error(refused: Refused) -> openai.ApiError:
    """A refusal as OpenAI's error: a 409 (the REST API's "not now") is a 503 here, which OpenAI's
    clients retry; the version's task is the `model`'s fault."""
    status = 503 if refused.status == 409 else refused.status
    field = "model" if refused.field == "task" else refused.field
    return openai.refused(status, refused.reason, refused.error_class, refused.retry_after_s, field)


def _count(
    release_id: int, outcome: Outcome, began: float, *, waited_s: float = 0.0, **measured: Any
) -> None:
    """Count the request for its release (latency less its wait for the bulkhead's slot) in this
    process's batch of figures (counting.py): the answer never waits for Redis, nor fails with it."""
    latency_ms = traffic.latency_ms(began, waited_s)
    counting.batch().add(release_id=release_id, outcome=outcome, latency_ms=latency_ms, **measured)


def _entry(route: Route) -> openai.ModelEntry:
    return openai.ModelEntry(
        id=route.name, created=route.created, max_model_len=route.max_model_len, owned_by=route.owned_by
    )
