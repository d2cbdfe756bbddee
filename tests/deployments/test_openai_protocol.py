"""The OpenAI protocol layer (apps.deployments.domain.openai): requests parsed into wire params,
answers shaped from the worker's results and frames, errors in OpenAI's shape.

The shapes are checked by the official `openai` SDK itself: its pydantic types, and its client
talking to the protocol layer through an in-memory transport (`Moc` below), so its own request
bodies are what the parsers read and its own response, stream and error parsing is what reads
ours. No network.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2
import numpy as np
import openai
import pytest
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from apps.deployments.domain import openai as api
from apps.serving.domain import wire
from apps.serving.domain.wire import Token
from apps.serving.runtimes.base import MAX_STOPS, check_complete

# --- the worker's side, faked: what its done results and delta frames hold -----------------------

HELLO = Token("Hello", 15496)
WORLD = Token(" world", 995, -2.0, [(" world", -2.0), (" there", -2.5)])
BANG = Token("!", 0, -0.125, [("!", -0.125), (".", -3.0)])


def tokens(*made: Token) -> list[dict[str, Any]]:
    return [wire.token_dict(t) for t in made]


def choice(
    index: int, text: str, reason: str = "stop", made: Sequence[Token] = (), prompt: Sequence[Token] = ()
):
    return {
        "index": index,
        "text": text,
        "finish_reason": reason,
        "tokens": tokens(*made) if made else None,
        "prompt": tokens(*prompt) if prompt else None,
    }


def result(*choices: dict[str, Any], prompt_tokens: int = 2, completion_tokens: int = 1) -> dict[str, Any]:
    return {
        "choices": list(choices),
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


class Moc:
    """The protocol layer as the data plane drives it, behind the SDK's own HTTP client: each
    request parsed by our parser, the worker's result (and, streamed, its delta frames) shaped by
    our builders. `error`, when set, refuses the request; `fail_mid_stream` after the frames."""

    def __init__(
        self,
        result: dict[str, Any] | None = None,
        frames: Sequence[dict[str, Any]] = (),
        *,
        error: api.ApiError | None = None,
        fail_mid_stream: api.ApiError | None = None,
    ) -> None:
        self.result, self.frames, self.error, self.fail_mid_stream = result, frames, error, fail_mid_stream
        self.calls: list[Any] = []
        self.sent = b""

    def client(self) -> openai.OpenAI:
        transport = httpx2.MockTransport(self._handle)
        return openai.OpenAI(
            api_key="moc-key",
            base_url="http://moc.test/v1",
            http_client=httpx2.Client(transport=transport),
            max_retries=0,
        )

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        try:
            if request.method == "GET":
                return httpx2.Response(200, json=api.models([api.ModelEntry("tiny", 1_700_000_000, 64)]))
            return self._answer(request.url.path, api.body_of(request.content))
        except api.ApiError as err:
            headers = {"retry-after": str(err.retry_after_s)} if err.retry_after_s else {}
            return httpx2.Response(err.status, json=err.body(), headers=headers)

    def _answer(self, path: str, body: dict[str, Any]) -> httpx2.Response:
        if path.endswith("/embeddings"):
            call = api.parse_embeddings(body)
            self.calls.append(call)
            return httpx2.Response(200, json=api.embeddings(call.model, self._result(), call.encoding_format))
        if path.endswith("/chat/completions"):
            chat = api.parse_chat(body, max_model_len=64)
            self.calls.append(chat)
            if not chat.stream:
                return httpx2.Response(
                    200, json=api.chat("chatcmpl-1", 7, chat.model, self._result(), logprobs=chat.logprobs)
                )
            chat_stream = api.ChatStream(
                "chatcmpl-1", 7, chat.model, logprobs=chat.logprobs, include_usage=chat.include_usage
            )
            return self._stream(chat_stream, chat_stream.start(chat.params["n"]))
        completion = api.parse_completion(body, max_model_len=64)
        self.calls.append(completion)
        if not completion.stream:
            shaped = api.completion(
                "cmpl-1",
                7,
                completion.model,
                self._result(),
                echo=completion.echo,
                logprobs=completion.logprobs,
            )
            return httpx2.Response(200, json=shaped)
        stream = api.CompletionStream(
            "cmpl-1",
            7,
            completion.model,
            logprobs=completion.logprobs,
            include_usage=completion.include_usage,
        )
        return self._stream(stream, [])

    def _result(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def _stream(
        self, stream: api.CompletionStream | api.ChatStream, first: list[dict[str, Any]]
    ) -> httpx2.Response:
        events = [api.sse(chunk) for chunk in first]
        for frame in self.frames:
            events += [api.sse(chunk) for chunk in stream.chunks(frame)]
        if self.fail_mid_stream is not None:
            events.append(api.error_event(self.fail_mid_stream))
        else:
            events += [api.sse(chunk) for chunk in stream.end(self._result())]
        events.append(api.DONE)
        self.sent = b"".join(events)
        return httpx2.Response(200, content=self.sent, headers={"content-type": "text/event-stream"})


def sent_chunks(raw: bytes) -> Iterator[dict[str, Any]]:
    """The JSON of each event a stream sent (not [DONE])."""
    for event in raw.split(b"\n\n"):
        if event and event != b"data: [DONE]":
            assert event.startswith(b"data: ")
            yield json.loads(event[len(b"data: ") :])


def refusal(parse: Any, body: dict[str, Any], **kwargs: Any) -> api.ApiError:
    with pytest.raises(api.ApiError) as caught:
        parse(body, **kwargs)
    assert caught.value.status == 400
    return caught.value


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "invalid_request_error"),
        (409, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "service_unavailable"),
        (504, "timeout"),
    ],
)
def test_an_errors_type_follows_its_status(status: int, kind: str) -> None:
    assert api.ApiError(status, "no").body()["error"]["type"] == kind


def test_an_error_body_has_openais_four_fields() -> None:
    err = api.ApiError(400, "'n' must be between 1 and 16.", param="n")

    assert err.body() == {
        "error": {
            "message": "'n' must be between 1 and 16.",
            "type": "invalid_request_error",
            "param": "n",
            "code": None,
        }
    }


def test_a_refused_inference_becomes_an_error_with_its_reason_code_and_retry() -> None:
    err = api.refused(429, "tiny v1 is busy.", "bulkhead_full", 3, "")

    assert (err.status, err.message, err.type, err.code, err.param, err.retry_after_s) == (
        429,
        "tiny v1 is busy.",
        "rate_limit_error",
        "bulkhead_full",
        None,
        3,
    )
    assert api.refused(400, "too long", "bad_input", None, "input").param == "input"


def test_the_sdk_raises_its_own_error_for_a_full_bulkhead_with_our_code() -> None:
    moc = Moc(error=api.refused(429, "tiny v1 is busy; try again shortly.", "bulkhead_full", 1, ""))

    with pytest.raises(openai.RateLimitError) as caught:
        moc.client().completions.create(model="tiny", prompt="Hi")

    assert caught.value.code == "bulkhead_full"
    assert caught.value.type == "rate_limit_error"
    assert caught.value.response.headers["retry-after"] == "1"
    assert "tiny v1 is busy" in caught.value.message


@pytest.mark.parametrize(
    ("err", "raised"),
    [
        (api.ApiError(401, "Incorrect API key provided."), openai.AuthenticationError),
        (api.ApiError(403, "This key may not call 'tiny'."), openai.PermissionDeniedError),
        (
            api.ApiError(404, "The model 'nope' does not exist.", param="model", code="model_not_found"),
            openai.NotFoundError,
        ),
        (api.refused(503, "tiny v1 is not answering.", "worker_silent", 5, ""), openai.InternalServerError),
    ],
)
def test_the_sdk_raises_the_error_class_of_each_status(err: api.ApiError, raised: type[Exception]) -> None:
    with pytest.raises(raised) as caught:
        Moc(error=err).client().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}]
        )

    assert caught.value.body == err.body()["error"]  # type: ignore[attr-defined]


def test_a_bad_parameter_reaches_the_sdk_naming_it() -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        Moc(result=result()).client().completions.create(model="tiny", prompt="Hi", temperature=3)

    assert caught.value.param == "temperature"
    assert caught.value.message.endswith("'temperature' must be between 0 and 2.")


def test_an_error_mid_stream_raises_in_the_sdk_after_the_text_before_it() -> None:
    frames = [wire.delta(0, "Hello")]
    moc = Moc(
        frames=frames, fail_mid_stream=api.refused(503, "the worker of tiny v1 died.", "worker_silent", 5, "")
    )
    stream = moc.client().chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    seen: list[str | None] = []

    def read() -> None:
        for chunk in stream:
            seen.extend(c.delta.content for c in chunk.choices)

    with pytest.raises(openai.APIError) as caught:
        read()

    assert seen == ["", "Hello"]
    assert caught.value.message == "the worker of tiny v1 died."
    assert caught.value.code == "worker_silent"


def test_a_body_that_is_not_a_json_object_is_a_400() -> None:
    for raw in (b"{", b"[1]", b"\xff", b"[" * 100_000):
        with pytest.raises(api.ApiError) as caught:
            api.body_of(raw)
        assert caught.value.status == 400


# --- parsing: completions ------------------------------------------------------------------------

PROMPT = {"model": "tiny", "prompt": "Once upon"}


def test_a_completion_takes_openais_defaults() -> None:
    call = api.parse_completion(PROMPT, max_model_len=None)

    assert call.params == {
        "prompts": ["Once upon"],
        "max_tokens": 16,
        "temperature": 1.0,
        "top_p": 1.0,
        "n": 1,
        "stop": [],
        "seed": None,
        "echo": False,
        "logprobs": None,
    }
    assert set(call.params) == set(wire.COMPLETE_PARAMS)
    assert (call.model, call.stream, call.include_usage, call.user) == ("tiny", False, False, None)


def test_a_completion_passes_every_parameter_it_takes() -> None:
    body = {
        **PROMPT,
        "max_tokens": 8,
        "temperature": 0,
        "top_p": 0.5,
        "n": 2,
        "stop": "\n",
        "seed": 7,
        "echo": True,
        "logprobs": 5,
        "user": "alice",
        "best_of": 2,
        "frequency_penalty": 0,
        "logit_bias": {},
        "a_field_from_the_future": [1],
    }

    call = api.parse_completion(body, max_model_len=64)

    assert call.params == {
        "prompts": ["Once upon"],
        "max_tokens": 8,
        "temperature": 0.0,
        "top_p": 0.5,
        "n": 2,
        "stop": ["\n"],
        "seed": 7,
        "echo": True,
        "logprobs": 5,
    }
    assert (call.user, call.echo, call.logprobs) == ("alice", True, 5)


@pytest.mark.parametrize(
    ("prompt", "prompts"),
    [
        ("Hi", ["Hi"]),
        (["Hi", "Bye"], ["Hi", "Bye"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
    ],
)
def test_a_prompt_may_be_text_or_token_ids_one_or_many(prompt: Any, prompts: list[Any]) -> None:
    assert (
        api.parse_completion({"model": "m", "prompt": prompt}, max_model_len=None).params["prompts"]
        == prompts
    )


def test_a_stream_asks_for_usage_through_stream_options() -> None:
    body = {**PROMPT, "stream": True, "stream_options": {"include_usage": True}}

    call = api.parse_completion(body, max_model_len=None)

    assert (call.stream, call.include_usage) == (True, True)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 3}, "model"),
        ({"prompt": None}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [[]]}, "prompt"),
        ({"prompt": ["a", 1]}, "prompt"),
        ({"prompt": [1, -2]}, "prompt"),
        ({"prompt": [[2**40]]}, "prompt"),
        ({"prompt": [True, 1]}, "prompt"),
        ({"prompt": {"text": "a"}}, "prompt"),
        ({"prompt": ["a"] * 257}, "prompt"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -1, "echo": True}, "max_tokens"),
        ({"max_tokens": 65}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.1}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"stop": ["a"] * 17}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"seed": "7"}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"echo": "yes"}, "echo"),
        ({"logprobs": 6}, "logprobs"),
        ({"logprobs": True}, "logprobs"),
        ({"stream": 1}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": []}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"stream": True, "echo": True}, "echo"),
        ({"user": 5}, "user"),
        ({"n": 2, "best_of": 3}, "best_of"),
        ({"suffix": "end"}, "suffix"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
    ],
)
def test_a_completion_refuses_a_bad_parameter_naming_it(change: dict[str, Any], param: str) -> None:
    err = refusal(api.parse_completion, {**PROMPT, **change}, max_model_len=64)

    assert err.param == param
    assert f"'{param}'" in err.message
    assert err.body()["error"]["type"] == "invalid_request_error"


def test_max_tokens_is_bounded_only_by_a_known_context() -> None:
    assert (
        api.parse_completion({**PROMPT, "max_tokens": 4096}, max_model_len=None).params["max_tokens"] == 4096
    )
    assert api.parse_completion({**PROMPT, "max_tokens": 64}, max_model_len=64).params["max_tokens"] == 64


def test_a_completion_takes_every_stop_string_lm_eval_sends_up_to_the_workers_bound() -> None:
    """lm-eval's local-completions sends a task's stop strings untruncated: humaneval's 5, plus eos."""
    humaneval = ["\nclass", "\ndef", "\n#", "\nif", "\nprint", "</s>"]
    assert api.parse_completion({**PROMPT, "stop": humaneval}, max_model_len=64).params["stop"] == humaneval

    most = [f"<{i}>" for i in range(MAX_STOPS)]
    call = api.parse_completion({**PROMPT, "stop": most}, max_model_len=64)

    check_complete(**call.params)  # the device worker takes what the parser passed
    assert call.params["stop"] == most
    assert refusal(api.parse_completion, {**PROMPT, "stop": [*most, "x"]}, max_model_len=64).param == "stop"


def test_max_tokens_0_is_taken_only_with_echo_to_score_the_prompt() -> None:
    call = api.parse_completion({**PROMPT, "max_tokens": 0, "echo": True, "logprobs": 1}, max_model_len=64)

    check_complete(**call.params)  # the device worker takes it too
    assert (call.params["max_tokens"], call.echo) == (0, True)
    err = refusal(api.parse_completion, {**PROMPT, "max_tokens": 0}, max_model_len=64)
    assert (err.param, err.message) == (
        "max_tokens",
        "'max_tokens' must be at least 1 (0 only with 'echo', to score the prompt).",
    )


def test_a_body_that_is_not_an_object_is_refused_by_every_parser() -> None:
    for parse, kwargs in (
        (api.parse_completion, {"max_model_len": None}),
        (api.parse_chat, {"max_model_len": None}),
        (api.parse_embeddings, {}),
    ):
        assert refusal(parse, ["not", "an", "object"], **kwargs).param is None  # type: ignore[arg-type]


# --- parsing: chat -------------------------------------------------------------------------------

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}


def test_a_chat_takes_openais_defaults() -> None:
    call = api.parse_chat(CHAT, max_model_len=None)

    assert call.params == {
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": None,
        "temperature": 1.0,
        "top_p": 1.0,
        "n": 1,
        "stop": [],
        "seed": None,
        "logprobs": None,
    }
    assert set(call.params) == set(wire.CHAT_PARAMS)
    assert call.logprobs is False


def test_a_chats_text_parts_are_joined_one_per_line_and_names_dropped() -> None:
    messages = [
        {"role": "developer", "content": "Be brief.", "name": "ops"},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hi."},
        {"role": "tool", "content": "42", "tool_call_id": "x"},
    ]

    call = api.parse_chat({"model": "tiny", "messages": messages}, max_model_len=None)

    assert call.params["messages"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Hello\nthere"},
        {"role": "assistant", "content": "Hi."},
        {"role": "tool", "content": "42"},
    ]


def test_max_completion_tokens_wins_over_the_deprecated_max_tokens() -> None:
    assert api.parse_chat({**CHAT, "max_tokens": 5}, max_model_len=64).params["max_tokens"] == 5
    both = {**CHAT, "max_tokens": 5, "max_completion_tokens": 9}
    assert api.parse_chat(both, max_model_len=64).params["max_tokens"] == 9


def test_chat_logprobs_ask_the_worker_for_the_top_alternatives_count() -> None:
    assert api.parse_chat({**CHAT, "logprobs": True}, max_model_len=None).params["logprobs"] == 0
    call = api.parse_chat({**CHAT, "logprobs": True, "top_logprobs": 3}, max_model_len=None)
    assert (call.params["logprobs"], call.logprobs) == (3, True)
    assert api.parse_chat({**CHAT, "logprobs": False}, max_model_len=None).params["logprobs"] is None


def test_a_chat_accepts_the_harmless_values_of_what_it_does_not_support() -> None:
    body = {
        **CHAT,
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "presence_penalty": 0.0,
    }

    assert api.parse_chat(body, max_model_len=None).model == "tiny"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "Hi"}, "messages"),
        ({"messages": ["Hi"]}, "messages[0]"),
        ({"messages": [{"role": "wizard", "content": "Hi"}]}, "messages[0].role"),
        ({"messages": [{"role": ["user"], "content": "Hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "a", "name": 1}]}, "messages[0].name"),
        (
            {
                "messages": [
                    {"role": "system", "content": "x"},
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://a/b.png"}}],
                    },
                ]
            },
            "messages[1].content",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": ["Hi"]}]}, "messages[0].content"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_completion_tokens": 65}, "max_completion_tokens"),
        ({"max_tokens": 65}, "max_tokens"),
        ({"logprobs": 1}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": {"name": "f"}}, "function_call"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": "json"}, "response_format"),
        ({"temperature": 9}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"n": 100}, "n"),
        ({"stop": [1]}, "stop"),
        ({"seed": 1.5}, "seed"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"user": ["a"]}, "user"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
    ],
)
def test_a_chat_refuses_a_bad_parameter_naming_it(change: dict[str, Any], param: str) -> None:
    err = refusal(api.parse_chat, {**CHAT, **change}, max_model_len=64)

    assert err.param == param
    assert f"'{param}'" in err.message


def test_a_refused_content_part_says_which_part_and_its_type() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "input_audio", "input_audio": {}}]

    err = refusal(
        api.parse_chat, {**CHAT, "messages": [{"role": "user", "content": parts}]}, max_model_len=None
    )

    assert "part 1 is of type 'input_audio'" in err.message


# --- parsing: embeddings -------------------------------------------------------------------------


def test_embeddings_default_to_floats_and_take_dimensions() -> None:
    call = api.parse_embeddings({"model": "e5", "input": ["a", "b"], "dimensions": 8, "user": "u"})

    assert call.params == {"inputs": ["a", "b"], "dimensions": 8}
    assert set(call.params) == set(wire.EMBED_PARAMS)
    assert (call.model, call.encoding_format, call.user) == ("e5", "float", "u")
    assert api.parse_embeddings({"model": "e5", "input": [[1, 2]], "encoding_format": "base64"}).params == {
        "inputs": [[1, 2]],
        "dimensions": None,
    }


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": ""}, "model"),
        ({"input": None}, "input"),
        ({"input": ""}, "input"),
        ({"input": ["a", ""]}, "input"),
        ({"input": []}, "input"),
        ({"input": ["a"] * 257}, "input"),
        ({"input": [1.5]}, "input"),
        ({"encoding_format": "int8"}, "encoding_format"),
        ({"encoding_format": ["float"]}, "encoding_format"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": "8"}, "dimensions"),
        ({"user": 1}, "user"),
    ],
)
def test_embeddings_refuse_a_bad_parameter_naming_it(change: dict[str, Any], param: str) -> None:
    err = refusal(api.parse_embeddings, {"model": "e5", "input": "a", **change})

    assert err.param == param
    assert f"'{param}'" in err.message


def test_256_inputs_are_taken() -> None:
    assert len(api.parse_embeddings({"model": "e5", "input": ["a"] * 256}).params["inputs"]) == 256


# --- shapes: completions -------------------------------------------------------------------------


def test_a_completion_is_a_valid_sdk_completion_with_usage() -> None:
    done = result(choice(0, " there", "length"), choice(1, "!", "stop"), prompt_tokens=3, completion_tokens=2)

    shaped = Completion.model_validate(api.completion("cmpl-1", 7, "tiny", done, echo=False, logprobs=None))

    assert [(c.index, c.text, c.finish_reason, c.logprobs) for c in shaped.choices] == [
        (0, " there", "length", None),
        (1, "!", "stop", None),
    ]
    assert shaped.usage is not None
    assert (shaped.usage.prompt_tokens, shaped.usage.completion_tokens, shaped.usage.total_tokens) == (
        3,
        2,
        5,
    )
    assert (shaped.id, shaped.created, shaped.model, shaped.object) == (
        "cmpl-1",
        7,
        "tiny",
        "text_completion",
    )


def test_completion_logprobs_offsets_count_characters_of_the_returned_text() -> None:
    done = result(choice(0, " world!", made=[WORLD, BANG]))

    shaped = api.completion("cmpl-1", 7, "tiny", done, echo=False, logprobs=2)

    Completion.model_validate(shaped)
    assert shaped["choices"][0]["logprobs"] == {
        "tokens": [" world", "!"],
        "token_logprobs": [-2.0, -0.125],
        "top_logprobs": [{" world": -2.0, " there": -2.5}, {"!": -0.125, ".": -3.0}],
        "text_offset": [0, 6],
    }


def test_echo_puts_the_prompt_before_the_completion_with_its_logprobs() -> None:
    """What evaluation harnesses read: the prompt's own token logprobs, the first one null."""
    moc = Moc(result(choice(0, "!", "length", made=[BANG], prompt=[HELLO, WORLD])))

    answer = moc.client().completions.create(
        model="tiny", prompt="Hello world", max_tokens=1, echo=True, logprobs=1
    )

    assert moc.calls[0].params["prompts"] == ["Hello world"]
    assert answer.choices[0].text == "Hello world!"
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["Hello", " world", "!"]
    assert logprobs.text_offset == [0, 5, 11]
    assert logprobs.token_logprobs == [None, -2.0, -0.125]
    assert logprobs.top_logprobs == [None, {" world": -2.0, " there": -2.5}, {"!": -0.125, ".": -3.0}]


def test_echo_with_max_tokens_0_answers_the_prompt_alone_with_its_logprobs() -> None:
    """The worker's answer to max_tokens 0: no text, no tokens, finish_reason length."""
    done = {
        "choices": [{**choice(0, "", "length", prompt=[HELLO, WORLD]), "tokens": []}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 0},
    }
    moc = Moc(done)

    answer = moc.client().completions.create(
        model="tiny", prompt="Hello world", max_tokens=0, echo=True, logprobs=1
    )

    assert moc.calls[0].params["max_tokens"] == 0
    assert (answer.choices[0].text, answer.choices[0].finish_reason) == ("Hello world", "length")
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None
    assert (logprobs.tokens, logprobs.token_logprobs) == (["Hello", " world"], [None, -2.0])
    assert logprobs.text_offset == [0, 5]
    assert answer.usage is not None
    assert (answer.usage.completion_tokens, answer.usage.total_tokens) == (0, 2)


def test_echo_of_a_token_id_prompt_gives_the_prompts_text() -> None:
    moc = Moc(result(choice(0, "!", made=[BANG], prompt=[HELLO, WORLD])))

    answer = moc.client().completions.create(model="tiny", prompt=[15496, 995], max_tokens=1, echo=True)

    assert moc.calls[0].params["prompts"] == [[15496, 995]]
    assert answer.choices[0].text == "Hello world!"
    assert answer.choices[0].logprobs is None


def test_a_log_probability_json_cannot_hold_is_openais_unlikely() -> None:
    odd = Token("x", 1, -math.inf, [("x", -math.inf)])

    logprobs = api.completion_logprobs([], [odd])
    content = api.chat_logprobs([odd])["content"][0]

    assert logprobs["token_logprobs"] == [-9999.0]
    assert logprobs["top_logprobs"] == [{"x": -9999.0}]
    assert (content["logprob"], content["top_logprobs"][0]["logprob"]) == (-9999.0, -9999.0)
    json.dumps(logprobs, allow_nan=False)


def test_a_streamed_completion_parses_in_the_sdk_with_offsets_running_on() -> None:
    frames = [
        wire.delta(0, " world", tokens=[WORLD]),
        wire.delta(0, "!", tokens=[BANG], finish_reason="stop"),
    ]
    done = result(choice(0, "", "stop"), prompt_tokens=2, completion_tokens=2)
    moc = Moc(done, frames)

    chunks = list(
        moc.client().completions.create(
            model="tiny", prompt="Hello", logprobs=1, stream=True, stream_options={"include_usage": True}
        )
    )

    assert [c.choices[0].text for c in chunks[:2]] == [" world", "!"]
    assert [c.choices[0].logprobs.text_offset for c in chunks[:2]] == [[0], [6]]  # type: ignore[union-attr]
    assert [c.choices[0].finish_reason for c in chunks[:2]] == [None, "stop"]
    assert [c.usage for c in chunks[:2]] == [None, None]
    assert chunks[2].choices == []
    assert chunks[2].usage is not None
    assert chunks[2].usage.total_tokens == 4
    assert len(chunks) == 3
    assert all("usage" in c for c in sent_chunks(moc.sent))


def test_a_choice_that_finished_only_in_the_done_result_still_gets_its_finish_chunk() -> None:
    stream = api.CompletionStream("cmpl-1", 7, "tiny", logprobs=None, include_usage=False)
    stream.chunks(wire.delta(0, "a", finish_reason="length"))
    assert stream.chunks(wire.delta(1, "")) == []
    stream.chunks(wire.delta(1, "b"))

    last = stream.end(result(choice(0, "", "length"), choice(1, "", "stop")))

    assert [c["choices"] for c in last] == [
        [{"index": 1, "text": "", "logprobs": None, "finish_reason": "stop"}]
    ]


# --- shapes: chat --------------------------------------------------------------------------------


def test_a_chat_completion_is_a_valid_sdk_chat_completion_with_logprobs() -> None:
    done = result(choice(0, " world!", "stop", made=[WORLD, BANG]))

    shaped = ChatCompletion.model_validate(api.chat("chatcmpl-1", 7, "tiny", done, logprobs=True))

    message = shaped.choices[0].message
    assert (message.role, message.content, shaped.choices[0].finish_reason) == (
        "assistant",
        " world!",
        "stop",
    )
    assert shaped.choices[0].logprobs is not None
    assert shaped.choices[0].logprobs.content is not None
    first = shaped.choices[0].logprobs.content[0]
    assert (first.token, first.logprob, first.bytes) == (" world", -2.0, [32, 119, 111, 114, 108, 100])
    assert [(t.token, t.logprob) for t in first.top_logprobs] == [(" world", -2.0), (" there", -2.5)]
    assert shaped.usage is not None
    assert shaped.usage.total_tokens == 3


def test_chat_logprobs_bytes_are_the_utf8_of_the_token() -> None:
    assert api.chat_logprobs([Token("é", 5, -1.0)])["content"][0]["bytes"] == [0xC3, 0xA9]


def test_a_chat_without_logprobs_has_none() -> None:
    shaped = api.chat("chatcmpl-1", 7, "tiny", result(choice(0, "Hi")), logprobs=False)

    assert ChatCompletion.model_validate(shaped).choices[0].logprobs is None


def test_a_streamed_chat_sends_role_then_content_then_finish_then_usage() -> None:
    frames = [wire.delta(0, "Hel"), wire.delta(0, "lo", finish_reason="stop")]
    moc = Moc(result(choice(0, "", "stop"), prompt_tokens=4, completion_tokens=2), frames)

    chunks = list(
        moc.client().chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    deltas = [
        (c.choices[0].delta.role, c.choices[0].delta.content, c.choices[0].finish_reason) for c in chunks[:-1]
    ]
    assert deltas == [("assistant", "", None), (None, "Hel", None), (None, "lo", None), (None, None, "stop")]
    assert all(c.object == "chat.completion.chunk" and c.id == "chatcmpl-1" for c in chunks)
    assert [c.usage for c in chunks[:-1]] == [None] * 4
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.total_tokens) == (4, 6)
    for raw in sent_chunks(moc.sent):
        assert "usage" in raw
        ChatCompletionChunk.model_validate(raw)
    assert moc.sent.endswith(b"\n\ndata: [DONE]\n\n")


def test_a_streamed_chat_without_usage_sends_no_usage_field() -> None:
    stream = api.ChatStream("chatcmpl-1", 7, "tiny", logprobs=False, include_usage=False)
    chunks = stream.start(2) + stream.chunks(wire.delta(1, "a", finish_reason="length"))

    chunks += stream.end(result(choice(0, "", "stop"), choice(1, "", "length")))

    assert all("usage" not in c for c in chunks)
    assert [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in chunks] == [
        (0, None),
        (1, None),
        (1, None),
        (1, "length"),
        (0, "stop"),
    ]


def test_a_streamed_chats_logprobs_come_with_their_delta() -> None:
    stream = api.ChatStream("chatcmpl-1", 7, "tiny", logprobs=True, include_usage=False)

    chunks = stream.chunks(wire.delta(0, " world", tokens=[WORLD]))

    parsed = ChatCompletionChunk.model_validate(chunks[0])
    assert parsed.choices[0].logprobs is not None
    assert parsed.choices[0].logprobs.content is not None
    assert parsed.choices[0].logprobs.content[0].token == " world"


# --- shapes: embeddings, models, events -------------------------------------------------------------

VECTORS = [[0.5, -1.25, 3.0], [0.0, 1.0, -0.75]]  # exact in float32


def test_float_embeddings_are_a_valid_sdk_response() -> None:
    done = {"data": VECTORS, "usage": {"prompt_tokens": 5}, "dim": 3}

    shaped = CreateEmbeddingResponse.model_validate(api.embeddings("e5", done, "float"))

    assert [e.embedding for e in shaped.data] == VECTORS
    assert [e.index for e in shaped.data] == [0, 1]
    assert (shaped.usage.prompt_tokens, shaped.usage.total_tokens, shaped.model) == (5, 5, "e5")


def test_base64_embeddings_are_little_endian_float32_as_the_sdk_decodes_them() -> None:
    vector = [0.1, -2.5, 1e-7]
    shaped = api.embeddings("e5", {"data": [vector], "usage": {"prompt_tokens": 1}, "dim": 3}, "base64")

    raw = base64.b64decode(shaped["data"][0]["embedding"])

    assert raw == struct.pack("<3f", *vector)
    assert np.frombuffer(raw, dtype="float32").tolist() == pytest.approx(vector, rel=1e-7)


def test_the_sdks_default_embeddings_request_asks_base64_and_decodes_our_answer() -> None:
    moc = Moc({"data": VECTORS, "usage": {"prompt_tokens": 2}, "dim": 3})

    answer = moc.client().embeddings.create(model="e5", input=["a", "b"])

    assert moc.calls[0].encoding_format == "base64"
    assert [e.embedding for e in answer.data] == VECTORS


def test_the_sdk_lists_our_models_with_their_context_length() -> None:
    page = Moc().client().models.list()

    assert [(m.id, m.owned_by, m.created) for m in page.data] == [("tiny", "moc", 1_700_000_000)]
    assert page.data[0].max_model_len == 64  # type: ignore[attr-defined]


def test_one_model_is_a_valid_sdk_model() -> None:
    shaped = Model.model_validate(api.model(api.ModelEntry("tiny", 5, None, owned_by="ops")))

    assert (shaped.id, shaped.object, shaped.created, shaped.owned_by) == ("tiny", "model", 5, "ops")


def test_an_event_is_one_data_line_and_a_blank_line() -> None:
    assert api.sse({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert api.sse({"a": "\ud800"}) == b'data: {"a":"?"}\n\n'  # a lone surrogate has no UTF-8
    assert api.DONE == b"data: [DONE]\n\n"
    assert api.error_event(api.ApiError(503, "gone")) == (
        b'data: {"error":{"message":"gone","type":"service_unavailable","param":null,"code":null}}\n\n'
    )
