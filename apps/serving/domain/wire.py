"""The direct channel between the data plane and a device worker: what travels, and where.

A request is one JSON message RPUSHed on its device queue's request list (`request_key(queue)`);
the device worker's reader thread BLPOPs it and answers with *frames* RPUSHed on the request's
reply list (`reply_key(id)`), which the web side BLPOPs. No Celery on this path: one Redis round
trip each way, and a stream of tokens is simply more frames on the same list.

Frames, in order: `accepted` (the worker run that took it, so a web side that sees that run die
refuses the request at once instead of waiting out its time), then for a streamed request
`delta`s as tokens are made, then exactly one of `done` or `error`. A request the worker drops as
stale (older than its time limit when taken) gets an `error` of class timeout.

A caller that goes away (disconnect, its own timeout) leaves a request the worker may already be
running: the web side then SETs the request's cancel key (`cancel_key(id)`, expiring with the
reply list, `reply_ttl_s`). The worker's frame push asks EXISTS on it in the same round trip, and
stops the request at its next frame once it is set: no more frames, the record says cancelled. A
request that is not streamed asks the same key now and then (every ~16 tokens, or 0.25 s) with an
EXISTS of its own. The runtimes know nothing of Redis: the worker's listener raises `Cancelled`.

Token records (`Token`) carry a token's text, id, log-probability and top alternatives: the
worker computes them, the data plane shapes them into OpenAI's two logprobs formats.

Pure Python: the web side, the worker and the tests share it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

REQUEST_PREFIX = "moc:dq:"
REPLY_PREFIX = "moc:dr:"
CANCEL_PREFIX = "moc:dx:"
# A reply list outlives the request's time limit by this much, then Redis drops it unread.
REPLY_TTL_GRACE_S = 30
# The lowest log-probability a token carries (OpenAI's floor): -inf, or NaN from an overflow, is
# not JSON, and a frame that cannot be written would leave its caller waiting out its time.
LOGPROB_FLOOR = -9999.0


def request_key(queue: str) -> str:
    """The list a device queue's worker reads requests from."""
    return f"{REQUEST_PREFIX}{queue}"


def reply_key(request_id: str) -> str:
    """The list one request's frames are written to."""
    return f"{REPLY_PREFIX}{request_id}"


def cancel_key(request_id: str) -> str:
    """Set (to anything) by the web side when the request's caller went away: the worker stops it."""
    return f"{CANCEL_PREFIX}{request_id}"


def reply_ttl_s(timeout_s: float) -> int:
    """How long a request's reply list (and its cancel key) lives: its time limit and a grace."""
    return math.ceil(timeout_s) + REPLY_TTL_GRACE_S


def finite_logprob(value: float) -> float:
    """`value` as a log-probability JSON can carry: at least LOGPROB_FLOOR, at most 0, never NaN."""
    return min(0.0, value) if value >= LOGPROB_FLOOR else LOGPROB_FLOOR


class Op(StrEnum):
    NOOP = "noop"  # answered at once with an empty result: the transport's own round trip
    COMPLETE = "complete"  # text completion: params COMPLETE_PARAMS
    CHAT = "chat"  # chat: messages rendered by the model's chat template, then COMPLETE
    EMBED = "embed"  # embeddings: params EMBED_PARAMS


class Kind(StrEnum):
    ACCEPTED = "accepted"
    DELTA = "delta"
    DONE = "done"
    ERROR = "error"


# What each op's `params` holds (the data plane validated every value before sending; the worker
# checks again and answers BadInput naming the parameter):
#   complete: prompts   list of (str | list[int]), one choice group per prompt
#             max_tokens int >= 1, or 0 with echo (the prompt scored, nothing generated)
#             temperature float 0..2; top_p float (0, 1]; n int >= 1
#             stop list[str]; seed int | None; echo bool; logprobs int 0..5 | None (None: none)
#   chat:     messages  list of {"role": str, "content": str}
#             max_tokens int | None (None: as much as the context leaves); temperature; top_p; n;
#             stop; seed; logprobs int 0..20 | None (the top alternatives per token; None: none)
#   embed:    inputs list of (str | list[int]); dimensions int | None
COMPLETE_PARAMS = ("prompts", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "echo", "logprobs")
CHAT_PARAMS = ("messages", "max_tokens", "temperature", "top_p", "n", "stop", "seed", "logprobs")
EMBED_PARAMS = ("inputs", "dimensions")


@dataclass(frozen=True, slots=True)
class Request:
    id: str  # hex; its frames go to reply_key(id)
    op: Op
    placement_id: int
    version_id: int
    params: dict[str, Any]
    timeout_s: float  # the time it has left when sent; the worker stops generating past it
    sent_at: float  # the web's clock (time.time()); the worker measures queue wait from it
    stream: bool = False  # send a delta per token (else only done)
    release_id: int | None = None  # for the worker's records
    deployment_id: int | None = None
    waited_ms: float = 0.0  # how long the web already waited for its bulkhead's slot

    def encode(self) -> str:
        # Its fields as they are (asdict() deep-copies the params first: 70 us against 16 us a request).
        shallow = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps(shallow, separators=(",", ":"), allow_nan=False)

    @classmethod
    def decode(cls, raw: bytes | str) -> Request:
        """A request read from a request list; ValueError when it is not one."""
        try:
            data = json.loads(raw)
            return cls(
                id=str(data["id"]),
                op=Op(data["op"]),
                placement_id=int(data["placement_id"]),
                version_id=int(data["version_id"]),
                params=dict(data.get("params") or {}),
                timeout_s=float(data["timeout_s"]),
                sent_at=float(data["sent_at"]),
                stream=bool(data.get("stream", False)),
                release_id=_int_or_none(data.get("release_id")),
                deployment_id=_int_or_none(data.get("deployment_id")),
                waited_ms=float(data.get("waited_ms") or 0.0),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a direct request: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Token:
    """One token as the worker made (or, for echo, read) it."""

    text: str  # its text as it adds to the output (may be "" inside a multi-byte character)
    id: int
    logprob: float | None = None  # None for the first prompt token of an echo
    top: list[tuple[str, float]] = field(default_factory=list)  # the most likely alternatives


def token_dict(token: Token) -> dict[str, Any]:
    return {"text": token.text, "id": token.id, "logprob": token.logprob, "top": [list(t) for t in token.top]}


def token_from(data: dict[str, Any]) -> Token:
    return Token(
        text=str(data["text"]),
        id=int(data["id"]),
        logprob=None if data.get("logprob") is None else float(data["logprob"]),
        top=[(str(t), float(lp)) for t, lp in data.get("top") or []],
    )


# --- frames: what the worker writes -------------------------------------------------------------
# accepted: {"k": "accepted", "host": hostname, "started": the run's start (core.workers' run)}
# delta:    {"k": "delta", "i": choice index, "text": str, "tokens": [token_dict] (only with
#            logprobs), "finish_reason": "stop" | "length" (on a choice's last delta only)}
# done:     {"k": "done", "result": op result (below), "figures": FIGURES}
# error:    {"k": "error", "error_class": ErrorClass value, "error": str, "resident": bool}
#
# Results. complete / chat: {"choices": [{"index", "text", "finish_reason", "tokens": [token_dict]
# | None, "prompt": [token_dict] | None (echo)}], "usage": {"prompt_tokens", "completion_tokens"}};
# streamed, each choice's text and tokens came as deltas and are left out here ("" and None).
# embed: {"data": [[float, ...], ...], "usage": {"prompt_tokens"}, "dim": int}. noop: {}.
#
# FIGURES (ms): queue_ms (sent to taken, plus the web's slot wait), compute_ms, ttft_ms (taken to
# first token; None without tokens), itl_ms (mean between tokens; None under two), tokens_in,
# tokens_out.
FIGURES = ("queue_ms", "compute_ms", "ttft_ms", "itl_ms", "tokens_in", "tokens_out")


def accepted(host: str, started: float) -> dict[str, Any]:
    return {"k": Kind.ACCEPTED.value, "host": host, "started": started}


def delta(
    index: int, text: str, *, tokens: list[Token] | None = None, finish_reason: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"k": Kind.DELTA.value, "i": index, "text": text}
    if tokens is not None:
        frame["tokens"] = [token_dict(t) for t in tokens]
    if finish_reason is not None:
        frame["finish_reason"] = finish_reason
    return frame


def done(result: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    return {"k": Kind.DONE.value, "result": result, "figures": figures}


def error(error_class: str, message: str, *, resident: bool = True) -> dict[str, Any]:
    return {"k": Kind.ERROR.value, "error_class": error_class, "error": message[:2000], "resident": resident}


def encode_frame(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


def decode_frame(raw: bytes | str) -> dict[str, Any]:
    """A frame read from a reply list; ValueError when it is not one."""
    frame = json.loads(raw)
    if not isinstance(frame, dict) or frame.get("k") not in set(Kind):
        raise ValueError(f"not a frame: {str(raw)[:80]}")
    return frame


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
