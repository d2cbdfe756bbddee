"""What the OpenAI-compatible API answers: wire results and frames shaped as OpenAI's objects.

The non-streamed builders take the worker's `done` result (serving.domain.wire); a stream takes
the worker's `delta` frames one by one (`CompletionStream`, `ChatStream`) and ends with the `done`
result, and each chunk it returns goes out as one server-sent event (`sse`).
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.deployments.domain.openai.errors import ApiError
from apps.serving.domain.wire import Token, token_from

DONE = b"data: [DONE]\n\n"
# OpenAI's log-probability for a token too unlikely to have one; JSON has no -Infinity.
UNLIKELY = -9999.0
OWNED_BY = "moc"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One deployment as /v1/models lists it."""

    id: str
    created: int
    max_model_len: int | None
    owned_by: str = OWNED_BY


def sse(obj: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying `obj`, as OpenAI streams it."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return b"data: " + text.encode(errors="replace") + b"\n\n"


def error_event(err: ApiError) -> bytes:
    """An error mid-stream: OpenAI's clients raise it when a data line holds an `error`."""
    return sse(err.body())


def usage(wire_usage: Mapping[str, Any]) -> dict[str, int]:
    prompt = int(wire_usage.get("prompt_tokens") or 0)
    made = int(wire_usage.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": made, "total_tokens": prompt + made}


def _tokens(raw: Iterable[Mapping[str, Any]] | None) -> list[Token]:
    return [token_from(dict(t)) for t in raw or ()]


def _logprob(value: float) -> float:
    return value if math.isfinite(value) else UNLIKELY


# --- completions ---------------------------------------------------------------------------------


def completion_logprobs(
    prompt_tokens: Sequence[Token], tokens: Sequence[Token], *, offset: int = 0
) -> dict[str, Any]:
    """The legacy logprobs of a completion choice: the echoed prompt's tokens, then the made ones.
    `text_offset` is where each token starts in the returned text (from `offset`, where a streamed
    chunk starts); the prompt's first token has no log-probability (null, as OpenAI's)."""
    every = [*prompt_tokens, *tokens]
    offsets = []
    for token in every:
        offsets.append(offset)
        offset += len(token.text)
    return {
        "tokens": [t.text for t in every],
        "token_logprobs": [None if t.logprob is None else _logprob(t.logprob) for t in every],
        "top_logprobs": [None if t.logprob is None else _top_dict(t.top) for t in every],
        "text_offset": offsets,
    }


def _top_dict(top: Sequence[tuple[str, float]]) -> dict[str, float]:
    # Two alternatives with the same text keep the likelier (the first: `top` is best first).
    shaped: dict[str, float] = {}
    for text, logprob in top:
        shaped.setdefault(text, _logprob(logprob))
    return shaped


def completion(
    id: str, created: int, model: str, result: Mapping[str, Any], *, echo: bool, logprobs: int | None
) -> dict[str, Any]:
    """A `text_completion`. With `echo` each choice's text starts with its prompt's text, as its
    tokens read (so a prompt of token ids echoes as text)."""
    choices = []
    for choice in result["choices"]:
        prompt = _tokens(choice.get("prompt")) if echo else []
        text = "".join(t.text for t in prompt) + choice["text"]
        shaped = None if logprobs is None else completion_logprobs(prompt, _tokens(choice.get("tokens")))
        reason = choice["finish_reason"]
        choices.append({"index": choice["index"], "text": text, "logprobs": shaped, "finish_reason": reason})
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage(result["usage"]),
    }


class _Stream:
    """What both streams share: the chunk envelope, the choices left to finish, the usage chunk."""

    object = ""

    def __init__(self, id: str, created: int, model: str, *, include_usage: bool) -> None:
        self.id, self.created, self.model, self.include_usage = id, created, model, include_usage
        self._finished: set[int] = set()

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None  # every chunk carries it; the last one holds it
        return chunk

    def _finish(self, index: int, reason: str) -> dict[str, Any]:
        raise NotImplementedError

    def end(self, result: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The last chunks, from the `done` result: a finish for any choice whose last delta did
        not say why it stopped, then the usage when asked for."""
        chunks = [
            self._chunk([self._finish(c["index"], c["finish_reason"])])
            for c in result["choices"]
            if c["index"] not in self._finished and c.get("finish_reason")
        ]
        if self.include_usage:
            chunks.append({**self._chunk([]), "usage": usage(result["usage"])})
        return chunks


class CompletionStream(_Stream):
    """A streamed completion: one chunk per delta frame. Keeps where each choice's text has
    reached, for the logprobs' text_offset."""

    object = "text_completion"

    def __init__(
        self, id: str, created: int, model: str, *, logprobs: int | None, include_usage: bool
    ) -> None:
        super().__init__(id, created, model, include_usage=include_usage)
        self.logprobs = logprobs
        self._at: dict[int, int] = {}

    def chunks(self, frame: Mapping[str, Any]) -> list[dict[str, Any]]:
        index, text, reason = frame["i"], frame["text"], frame.get("finish_reason")
        if not (text or frame.get("tokens") or reason):
            return []
        at = self._at.get(index, 0)
        shaped = None
        if self.logprobs is not None:
            shaped = completion_logprobs([], _tokens(frame.get("tokens")), offset=at)
        self._at[index] = at + len(text)
        if reason:
            self._finished.add(index)
        return [self._chunk([{"index": index, "text": text, "logprobs": shaped, "finish_reason": reason}])]

    def _finish(self, index: int, reason: str) -> dict[str, Any]:
        return {"index": index, "text": "", "logprobs": None, "finish_reason": reason}


# --- chat ----------------------------------------------------------------------------------------


def _bytes(text: str) -> list[int]:
    # errors="replace": a lone surrogate (no text a tokenizer decodes, but a str may hold one) has
    # no UTF-8, and one odd token must not break the answer.
    return list(text.encode(errors="replace"))


def chat_logprobs(tokens: Sequence[Token]) -> dict[str, Any]:
    """A chat choice's logprobs: each made token with its top alternatives."""
    return {
        "content": [
            {
                "token": t.text,
                "logprob": UNLIKELY if t.logprob is None else _logprob(t.logprob),
                "bytes": _bytes(t.text),
                "top_logprobs": [
                    {"token": text, "logprob": _logprob(lp), "bytes": _bytes(text)} for text, lp in t.top
                ],
            }
            for t in tokens
        ]
    }


def chat(id: str, created: int, model: str, result: Mapping[str, Any], *, logprobs: bool) -> dict[str, Any]:
    """A `chat.completion`."""
    choices = [
        {
            "index": choice["index"],
            "message": {"role": "assistant", "content": choice["text"]},
            "logprobs": chat_logprobs(_tokens(choice.get("tokens"))) if logprobs else None,
            "finish_reason": choice["finish_reason"],
        }
        for choice in result["choices"]
    ]
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage(result["usage"]),
    }


class ChatStream(_Stream):
    """A streamed chat completion: each choice's role chunk first (`start`), a content chunk per
    delta frame, a chunk with the finish reason alone, and the usage chunk last when asked for."""

    object = "chat.completion.chunk"

    def __init__(self, id: str, created: int, model: str, *, logprobs: bool, include_usage: bool) -> None:
        super().__init__(id, created, model, include_usage=include_usage)
        self.logprobs = logprobs

    def start(self, choices: int) -> list[dict[str, Any]]:
        """The role chunks, sent before the first token is made."""
        delta = {"role": "assistant", "content": ""}
        return [
            self._chunk([{"index": i, "delta": delta, "logprobs": None, "finish_reason": None}])
            for i in range(choices)
        ]

    def chunks(self, frame: Mapping[str, Any]) -> list[dict[str, Any]]:
        index, text, reason = frame["i"], frame["text"], frame.get("finish_reason")
        tokens = _tokens(frame.get("tokens"))
        chunks = []
        if text or tokens:
            shaped = chat_logprobs(tokens) if self.logprobs else None
            content = {"index": index, "delta": {"content": text}, "logprobs": shaped, "finish_reason": None}
            chunks.append(self._chunk([content]))
        if reason:
            self._finished.add(index)
            chunks.append(self._chunk([self._finish(index, reason)]))
        return chunks

    def _finish(self, index: int, reason: str) -> dict[str, Any]:
        return {"index": index, "delta": {}, "logprobs": None, "finish_reason": reason}


# --- embeddings and models -----------------------------------------------------------------------


def _base64(vector: Sequence[float]) -> str:
    """Little-endian float32, as the SDK decodes it (numpy.frombuffer(..., dtype="float32"))."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings(model: str, result: Mapping[str, Any], encoding_format: str) -> dict[str, Any]:
    """A list of embeddings, each a list of floats or (`base64`) a base64 string."""
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _base64(vector) if encoding_format == "base64" else [float(x) for x in vector],
        }
        for i, vector in enumerate(result["data"])
    ]
    tokens = int(result["usage"].get("prompt_tokens") or 0)
    counted = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": counted}


def model(entry: ModelEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "model",
        "created": entry.created,
        "owned_by": entry.owned_by,
        "max_model_len": entry.max_model_len,
    }


def models(entries: Iterable[ModelEntry]) -> dict[str, Any]:
    return {"object": "list", "data": [model(e) for e in entries]}
