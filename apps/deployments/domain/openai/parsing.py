"""OpenAI request bodies read into the wire params the device worker takes (serving.domain.wire).

A body is whatever `json.loads` gave, so every value's type is checked; a field we do not know is
ignored (clients send new ones all the time), a field we know but do not support with a value that
would change the answer is refused rather than silently dropped. Every refusal is a 400 naming the
parameter, worded like OpenAI's own ("'temperature' must be between 0 and 2").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apps.deployments.domain.openai.errors import ApiError, invalid

MAX_N = 16
# Above OpenAI's 4: lm-evaluation-harness sends a task's every stop string (humaneval's 5, plus
# end-of-text) untruncated; the device worker's own bound (runtimes.base.MAX_STOPS).
MAX_STOP = 16
# Prompts in one completion request, inputs in one embeddings request.
MAX_INPUTS = 256
MAX_COMPLETION_LOGPROBS = 5
MAX_TOP_LOGPROBS = 20
DEFAULT_MAX_TOKENS = 16
# Token ids and seeds beyond these would overflow the runtimes' integer types.
MAX_TOKEN_ID = 2**31 - 1
SEED_LOW, SEED_HIGH = -(2**63), 2**63 - 1
ROLES = ("system", "developer", "user", "assistant", "tool")
ENCODINGS = ("float", "base64")

Body = Mapping[str, Any]
Prompt = str | list[int]


@dataclass(frozen=True, slots=True)
class Generating:
    """What a completions or chat request holds besides its own: `params` for the worker, the
    streaming asked for, and `user`, the key a sticky split routes by."""

    model: str
    params: dict[str, Any]
    stream: bool
    include_usage: bool
    user: str | None


@dataclass(frozen=True, slots=True)
class CompletionCall(Generating):
    """A /v1/completions request: `params` are wire COMPLETE_PARAMS."""

    echo: bool
    logprobs: int | None


@dataclass(frozen=True, slots=True)
class ChatCall(Generating):
    """A /v1/chat/completions request: `params` are wire CHAT_PARAMS."""

    logprobs: bool


@dataclass(frozen=True, slots=True)
class EmbeddingsCall:
    """A /v1/embeddings request: `params` are wire EMBED_PARAMS."""

    model: str
    params: dict[str, Any]
    encoding_format: str
    user: str | None


def body_of(raw: bytes) -> dict[str, Any]:
    """A request's JSON body; a 400 when it is not a JSON object."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise invalid(None, "We could not parse the JSON body of your request.") from exc
    return _object(body)


def parse_completion(body: Any, *, max_model_len: int | None) -> CompletionCall:
    """A completions request; ApiError (400) naming the first parameter at fault."""
    body = _object(body)
    model = _model(body)
    prompts = _inputs(body, "prompt")
    echo = _boolean(body, "echo")
    # max_tokens 0 with echo scores the prompt alone (how harnesses read a text's likelihood).
    if not echo and _is_int(body.get("max_tokens")) and body["max_tokens"] == 0:
        raise invalid(
            "max_tokens", "'max_tokens' must be at least 1 (0 only with 'echo', to score the prompt)."
        )
    max_tokens = _max_tokens(body, "max_tokens", max_model_len, least=0 if echo else 1)
    logprobs = _integer(body, "logprobs", 0, MAX_COMPLETION_LOGPROBS)
    sampling = _sampling(body)
    stream, include_usage = _streaming(body)
    if echo and stream:
        raise invalid("echo", "'echo' is not supported with 'stream'.")
    best_of = body.get("best_of")
    if best_of is not None and best_of != sampling["n"]:
        raise invalid("best_of", "'best_of' is not supported (other than equal to 'n').")
    if body.get("suffix") not in (None, ""):
        raise invalid("suffix", "'suffix' is not supported.")
    params = {
        "prompts": prompts,
        "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        **sampling,
        "echo": echo,
        "logprobs": logprobs,
    }
    return CompletionCall(model, params, stream, include_usage, _user(body), echo, logprobs)


def parse_chat(body: Any, *, max_model_len: int | None) -> ChatCall:
    """A chat completions request; ApiError (400) naming the first parameter at fault."""
    body = _object(body)
    model = _model(body)
    messages = _messages(body)
    # max_completion_tokens replaced max_tokens; a client may still send either.
    max_tokens = _max_tokens(body, "max_completion_tokens", max_model_len)
    deprecated = _max_tokens(body, "max_tokens", max_model_len)
    logprobs = _boolean(body, "logprobs")
    top_logprobs = _integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top_logprobs is not None and not logprobs:
        raise invalid("top_logprobs", "'top_logprobs' requires 'logprobs' to be true.")
    for name in ("tools", "functions"):
        if body.get(name) not in (None, []):
            raise invalid(name, f"'{name}' is not supported.")
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            raise invalid(name, f"'{name}' is not supported.")
    _response_format(body)
    sampling = _sampling(body)
    stream, include_usage = _streaming(body)
    params = {
        "messages": messages,
        "max_tokens": deprecated if max_tokens is None else max_tokens,
        **sampling,
        "logprobs": (top_logprobs or 0) if logprobs else None,
    }
    return ChatCall(model, params, stream, include_usage, _user(body), logprobs)


def parse_embeddings(body: Any) -> EmbeddingsCall:
    """An embeddings request; ApiError (400) naming the first parameter at fault."""
    body = _object(body)
    model = _model(body)
    inputs = _inputs(body, "input")
    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    elif encoding not in ENCODINGS:
        raise invalid("encoding_format", "'encoding_format' must be 'float' or 'base64'.")
    dimensions = _integer(body, "dimensions", 1)
    params = {"inputs": inputs, "dimensions": dimensions}
    return EmbeddingsCall(model, params, encoding, _user(body))


# --- the parameters ------------------------------------------------------------------------------


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid(None, "The request body must be a JSON object.")
    return body


def _model(body: Body) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "'model' is required: the name of a deployment.")
    return model


def _user(body: Body) -> str | None:
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("user", "'user' must be a string.")
    return user


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range(name: str, low: int | float, high: int | float | None) -> ApiError:
    if high is None:
        return invalid(name, f"'{name}' must be at least {low}.")
    return invalid(name, f"'{name}' must be between {low} and {high}.")


def _integer(body: Body, name: str, low: int, high: int | None = None) -> int | None:
    """An integer parameter within [low, high]; None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise invalid(name, f"'{name}' must be an integer.")
    if value < low or (high is not None and value > high):
        raise _range(name, low, high)
    return int(value)


def _number(body: Body, name: str, low: float, high: float, default: float) -> float:
    """A number within [low, high]; `default` when absent or null."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise invalid(name, f"'{name}' must be a number.")
    if not low <= value <= high:
        raise _range(name, low, high)
    return float(value)


def _boolean(body: Body, name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(name, f"'{name}' must be a boolean.")
    return value


def _max_tokens(body: Body, name: str, max_model_len: int | None, *, least: int = 1) -> int | None:
    value = _integer(body, name, least)
    if value is not None and max_model_len is not None and value > max_model_len:
        raise invalid(name, f"'{name}' must be at most {max_model_len}, the model's context length.")
    return value


def _sampling(body: Body) -> dict[str, Any]:
    """The sampling parameters completions and chat share, as wire params."""
    temperature = _number(body, "temperature", 0, 2, 1.0)
    top_p = _number(body, "top_p", 0, 1, 1.0)
    if top_p == 0:
        raise invalid("top_p", "'top_p' must be greater than 0 and at most 1.")
    n = _integer(body, "n", 1, MAX_N)
    seed = _integer(body, "seed", SEED_LOW, SEED_HIGH)
    for name in ("frequency_penalty", "presence_penalty"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or value != 0):
            raise invalid(name, f"'{name}' is not supported (other than 0).")
    if body.get("logit_bias") not in (None, {}):
        raise invalid("logit_bias", "'logit_bias' is not supported.")
    return {"temperature": temperature, "top_p": top_p, "n": n or 1, "stop": _stop(body), "seed": seed}


def _stop(body: Body) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise invalid("stop", "'stop' must be a non-empty string or a list of them.")
    if len(stops) > MAX_STOP:
        raise invalid("stop", f"'stop' may hold at most {MAX_STOP} sequences.")
    return stops


def _streaming(body: Body) -> tuple[bool, bool]:
    """Whether to stream, and whether the stream ends with a usage chunk."""
    stream = _boolean(body, "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise invalid("stream_options", "'stream_options' is only allowed when 'stream' is true.")
    if not isinstance(options, dict):
        raise invalid("stream_options", "'stream_options' must be an object.")
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise invalid("stream_options.include_usage", "'stream_options.include_usage' must be a boolean.")
    return stream, bool(include_usage)


def _inputs(body: Body, name: str) -> list[Prompt]:
    """Prompts or inputs: a string, a list of strings, one list of token ids, or a list of them."""
    value = body.get(name)
    if value is None:
        raise invalid(name, f"'{name}' is required.")
    shape = f"'{name}' must be a string, a list of strings, a list of token ids or a list of such lists."
    if isinstance(value, str) or (isinstance(value, list) and value and all(map(_is_int, value))):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise invalid(name, shape)
    if not items:
        raise invalid(name, f"'{name}' must not be empty.")
    if len(items) > MAX_INPUTS:
        raise invalid(name, f"'{name}' may hold at most {MAX_INPUTS} items.")
    for item in items:
        if isinstance(item, str):
            if not item:
                raise invalid(name, f"'{name}' must not hold an empty string.")
        elif isinstance(item, list) and item and all(map(_is_int, item)):
            if not all(0 <= token <= MAX_TOKEN_ID for token in item):
                raise invalid(name, f"'{name}' token ids must be between 0 and {MAX_TOKEN_ID}.")
        else:
            raise invalid(name, shape)
    return items


def _messages(body: Body) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "'messages' must be a non-empty list of messages.")
    shaped = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(where, f"'{where}' must be an object with a role and content.")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            roles = ", ".join(f"'{r}'" for r in ROLES)
            raise invalid(f"{where}.role", f"'{where}.role' must be one of {roles}.")
        if message.get("name") is not None and not isinstance(message["name"], str):
            raise invalid(f"{where}.name", f"'{where}.name' must be a string.")
        shaped.append({"role": role, "content": _content(message.get("content"), f"{where}.content")})
    return shaped


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or its text parts one per line (the only parts we take)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(where, f"'{where}' must be a string or a list of text parts.")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            shown = f"of type '{kind}'" if isinstance(kind, str) else "not a text part"
            raise invalid(where, f"'{where}' may hold only text parts; part {j} is {shown}.")
        texts.append(part["text"])
    return "\n".join(texts)


def _response_format(body: Body) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind != "text":
        shown = f" of type '{kind}'" if isinstance(kind, str) else ""
        raise invalid("response_format", f"'response_format'{shown} is not supported; only 'text' is.")
