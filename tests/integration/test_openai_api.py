"""The official `openai` SDK against a live MOC: uvicorn serving moc_site.asgi (the data plane
under /v1/), a real device worker on a simulated GPU holding the demo LM, and a deployment whose
promoted release is that placement. Everything a client sees goes through the SDK's own parsing:
models, completions (echo and logprobs as evaluation harnesses ask), chat (plain and streamed
with usage), embeddings (float and the SDK's default base64), errors by status, tokens streamed
as they are made, a hostile chat template refused without running, and a deployment scaled to
zero woken by concurrent first requests that share one load."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2
import openai
import pytest
from django.test.utils import override_settings

from apps.core import services
from apps.core.domain.roles import Role
from apps.deployments.models import KeyGrant, ReleaseEvent
from apps.deployments.rollout import replicas
from apps.models import demo, scanning
from apps.models.models import ModelFile, ModelVersion
from apps.models.scanning.checksums import files_checksum
from apps.models.scanning.validate import version_validate
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.integration.deployed import (  # noqa: F401
    NAME,
    Served,
    deployed,
    loaded,
    operator_key,
    registered,
    served,
    serving_worker,
    settled,
)
from tests.procs import Process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
P = PlacementState
PROMPT = "The fleet serves models"
# Long enough to take a while on the demo LM (~0.7 ms a token on an idle core; 16 x 100 tokens),
# short enough to fit its 128-token context.
SLOW = {"prompt": "The fleet", "max_tokens": 100, "n": 16, "temperature": 0}


@pytest.fixture
def sdk(asgi_server: str, operator_key: str) -> Iterator[openai.OpenAI]:  # noqa: F811
    """The official client on the live uvicorn, with an operator's key; no retries, so what the
    server answered is what the test sees."""
    with openai.OpenAI(base_url=f"{asgi_server}/v1", api_key=operator_key, max_retries=0, timeout=120) as c:
        yield c


def in_process(path: str) -> Any:
    """The demo LM as transformers computes it in this process (no MOC code): tokenizer, model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()


def test_models_lists_and_retrieves_the_deployments_a_key_may_call(
    sdk: openai.OpenAI,
    registered: dict[str, ModelVersion],  # noqa: F811
    asgi_server: str,
    make_user: Callable[..., Any],
) -> None:
    ours = deployed(registered[demo.BASE], name=NAME)
    other = deployed(registered[demo.BASE], name="other-lm")
    key, granted = services.api_key_create(
        owner=make_user(Role.OPERATOR), name="granted", role=Role.OPERATOR, acting_role=Role.OPERATOR
    )
    KeyGrant.objects.create(key=key, deployment=other)

    listed = sdk.models.list()
    found = sdk.models.retrieve(NAME)

    assert {m.id for m in listed.data} == {NAME, "other-lm"}
    assert (found.id, found.object, found.owned_by) == (NAME, "model", "moc")
    assert found.created == int(ours.created_at.timestamp())
    assert (found.model_extra or {}).get("max_model_len") == demo.lm.CONTEXT
    with openai.OpenAI(base_url=f"{asgi_server}/v1", api_key=granted, max_retries=0) as limited:
        assert [m.id for m in limited.models.list().data] == ["other-lm"]
        with pytest.raises(openai.NotFoundError):
            limited.models.retrieve(NAME)


def test_unknown_models_and_bad_parameters_are_errors_the_sdk_parses(
    sdk: openai.OpenAI,
    registered: dict[str, ModelVersion],  # noqa: F811
) -> None:
    deployed(registered[demo.BASE])

    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.completions.create(model="no-such-model", prompt=PROMPT)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.completions.create(model=NAME, prompt=PROMPT, temperature=5)
    with pytest.raises(openai.BadRequestError) as bad_chat:
        sdk.chat.completions.create(model=NAME, messages=[{"role": "wizard", "content": "hi"}])

    assert (unknown.value.status_code, unknown.value.code, unknown.value.param) == (
        404,
        "model_not_found",
        "model",
    )
    assert "no-such-model" in unknown.value.message
    assert (bad.value.status_code, bad.value.param) == (400, "temperature")
    assert bad_chat.value.param is not None
    assert bad_chat.value.param.startswith("messages")


def test_a_completion_echoes_the_prompt_with_the_logprobs_the_model_computes(
    sdk: openai.OpenAI,
    served: Served,  # noqa: F811
) -> None:
    import torch

    from apps.serving import runtimes

    plain = sdk.completions.with_raw_response.create(model=NAME, prompt=PROMPT, max_tokens=8, temperature=0)
    scored = sdk.completions.create(
        model=NAME, prompt=PROMPT, max_tokens=1, temperature=0, echo=True, logprobs=1
    )

    # the plain answer is what the same runtime makes in this process, and says who made it
    assert plain.headers["x-moc-release"] == str(served.deployment.current_release_id)
    assert plain.headers["x-moc-version"] == str(served.version.pk)
    answer = plain.parse()
    runtime = runtimes.load(
        runtimes.LoadSpec(path=served.version.path, format="hf", kind="causal-lm", device="cpu")
    )
    made = runtime.complete(
        prompts=[PROMPT], max_tokens=8, temperature=0.0, top_p=1.0, n=1, stop=[], seed=None,
        echo=False, logprobs=None, deadline=None,
    )  # fmt: skip
    runtime.close()
    assert answer.choices[0].text == made["choices"][0]["text"]
    assert (answer.choices[0].finish_reason, answer.usage.completion_tokens) == ("length", 8)
    # the echo: the prompt's own tokens, each scored as the model scores it given those before
    tokenizer, model = in_process(served.version.path)
    ids = tokenizer(PROMPT)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    expected = [torch.log_softmax(logits[i - 1], -1)[ids[i]].item() for i in range(1, len(ids))]
    logprobs = scored.choices[0].logprobs
    assert logprobs is not None
    assert scored.choices[0].text.startswith(PROMPT)
    assert "".join(logprobs.tokens[: len(ids)]) == PROMPT
    assert logprobs.token_logprobs[0] is None  # nothing precedes the first token
    assert logprobs.token_logprobs[1 : len(ids)] == pytest.approx(expected, abs=1e-4)
    assert len(logprobs.tokens) == len(ids) + 1  # and the one token made
    assert scored.usage.prompt_tokens == len(ids)


def test_a_streamed_chat_sends_the_role_then_deltas_then_usage_and_says_what_the_plain_one_says(
    sdk: openai.OpenAI,
    served: Served,  # noqa: F811
) -> None:
    messages = [{"role": "user", "content": "What does the fleet do?"}]

    plain = sdk.chat.completions.create(model=NAME, messages=messages, max_tokens=24, temperature=0)
    chunks = list(
        sdk.chat.completions.create(
            model=NAME,
            messages=messages,
            max_completion_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert plain.object == "chat.completion"
    assert plain.choices[0].message.role == "assistant"
    text = plain.choices[0].message.content
    assert text
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    first, *middle, last = chunks
    assert first.choices[0].delta.role == "assistant"
    assert not first.choices[0].delta.content
    deltas = [c.choices[0].delta.content or "" for c in middle if c.choices]
    assert len([d for d in deltas if d]) > 1  # streamed in pieces, not in one
    assert "".join(deltas) == text
    finishes = [c.choices[0].finish_reason for c in middle if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_embeddings_come_as_floats_and_as_the_sdks_default_base64_alike(
    sdk: openai.OpenAI,
    served: Served,  # noqa: F811
) -> None:
    texts = ["a fleet of GPUs", "a model registry"]

    floats = sdk.embeddings.create(model=NAME, input=texts, encoding_format="float")
    default = sdk.embeddings.with_raw_response.create(model=NAME, input=texts)  # the SDK asks for base64

    assert json.loads(default.http_request.content)["encoding_format"] == "base64"
    decoded = default.parse()
    assert [e.index for e in floats.data] == [0, 1]
    for as_float, as_base64 in zip(floats.data, decoded.data, strict=True):
        assert len(as_float.embedding) == demo.lm.HIDDEN
        assert as_base64.embedding == pytest.approx(as_float.embedding, abs=1e-6)
    assert floats.data[0].embedding != pytest.approx(floats.data[1].embedding, abs=1e-3)
    assert floats.usage.prompt_tokens > 0


def test_tokens_stream_as_the_worker_makes_them(
    sdk: openai.OpenAI,
    served: Served,  # noqa: F811
) -> None:
    began = time.perf_counter()
    arrivals = [(time.perf_counter(), c) for c in sdk.completions.create(model=NAME, stream=True, **SLOW)]

    texts = [(t, c.choices[0].text) for t, c in arrivals if c.choices and c.choices[0].text]
    total = arrivals[-1][0] - began
    first_text, last_text = texts[0][0], texts[-1][0]
    # 1,600 tokens take the worker about a second: the first arrives long before the last
    assert len(texts) >= 100
    assert last_text - first_text > 0.3
    assert first_text - began < total / 3


def test_many_concurrent_streams_are_all_answered(
    asgi_server: str,
    operator_key: str,  # noqa: F811
    registered: dict[str, ModelVersion],  # noqa: F811
    serving_worker: Callable[[], Process],  # noqa: F811
) -> None:
    # More than redis-py's default pool of 100 connections: each stream in flight holds one.
    clients = 200
    serving_worker()
    version = registered[demo.BASE]
    deployed(version, [loaded(version)], max_concurrency=clients, max_queue=clients)

    async def one(client: openai.AsyncOpenAI) -> str:
        stream = await client.completions.create(
            model=NAME, prompt=PROMPT, max_tokens=32, temperature=0, stream=True
        )
        return "".join([c.choices[0].text async for c in stream if c.choices])

    async def all_at_once() -> list[str | BaseException]:
        async with openai.AsyncOpenAI(
            base_url=f"{asgi_server}/v1", api_key=operator_key, max_retries=0, timeout=120
        ) as client:
            return await asyncio.gather(*(one(client) for _ in range(clients)), return_exceptions=True)

    texts = asyncio.run(all_at_once())

    failed = [t for t in texts if isinstance(t, BaseException)]
    assert not failed, f"{len(failed)} of {clients} failed, the first: {failed[0]!r}"
    assert len(set(texts)) == 1  # greedy: one answer, every time


def test_a_full_bulkhead_is_a_rate_limit_error_with_retry_after(
    sdk: openai.OpenAI,
    registered: dict[str, ModelVersion],  # noqa: F811
    serving_worker: Callable[[], Process],  # noqa: F811
) -> None:
    serving_worker()
    deployed(registered[demo.BASE], [loaded(registered[demo.BASE])], max_concurrency=1, max_queue=0)
    holder = sdk.completions.create(model=NAME, stream=True, **SLOW)
    next(iter(holder))  # it holds the one slot until its last token

    def ask(_: int) -> Any:
        try:
            return sdk.completions.create(model=NAME, prompt=PROMPT, max_tokens=4)
        except openai.APIStatusError as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    holder.close()

    assert all(isinstance(a, openai.RateLimitError) for a in answers), answers
    for refused in answers:
        assert int(refused.response.headers["retry-after"]) >= 1
        assert refused.response.headers["x-moc-release"]

    # the slot comes back: the next request is served
    def answered() -> bool:
        try:
            return bool(sdk.completions.create(model=NAME, prompt=PROMPT, max_tokens=4).choices)
        except openai.RateLimitError:
            return False

    wait_until(answered, 30, "the holder's slot to come back")


HOSTILE = (
    "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}"
)


def test_a_hostile_chat_template_is_refused_without_running_and_fails_validation(
    sdk: openai.OpenAI,
    serving_worker: Callable[[], Process],  # noqa: F811
    demo_models: Path,
    tmp_path: Path,
) -> None:
    # given: the demo LM with a chat template that reaches for Python internals to write a file,
    # in chat_template.jinja (which transformers loads in preference to the config's harmless one)
    marker, control = tmp_path / "ran", tmp_path / "ran-unsandboxed"
    root = tmp_path / "hostile-root"
    folder = root / "hostile-lm"
    shutil.copytree(demo_models / demo.BASE, folder)
    (folder / "chat_template.jinja").write_text(HOSTILE.replace("MARKER", str(marker)))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    # (a plain Jinja environment would run it: the template is no pretend attack)
    jinja2.Environment().from_string(HOSTILE.replace("MARKER", str(control))).render(messages=[])
    assert control.exists()
    with override_settings(MOC_MODEL_ROOTS=[str(root)]):
        scanning.scan_run(scan=scanning.scan_request())
    version = ModelVersion.objects.get(path=str(folder.resolve()))
    serving_worker()
    deployed(version, [loaded(version)])  # loaded before its validation ran, as a scan leaves it

    # when: a chat asks the model to render it
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}])
    # and the registry validates the folder
    files_checksum(file_ids=list(ModelFile.objects.filter(version=version).values_list("pk", flat=True)))
    with override_settings(MOC_MODEL_ROOTS=[str(root)]):
        state = version_validate(version=version)

    # then: refused, never run; and the registry fails the version, saying why
    assert "chat template" in refused.value.message
    assert not marker.exists()
    assert state == "invalid"
    version.refresh_from_db()
    failed = [c for c in version.validation_report if c["status"] == "fail"]
    assert [c["check"] for c in failed] == ["chat_template"], failed
    assert "Python internal" in failed[0]["detail"]


def test_a_deployment_scaled_to_zero_wakes_once_for_concurrent_first_requests(
    sdk: openai.OpenAI,
    registered: dict[str, ModelVersion],  # noqa: F811
    serving_worker: Callable[[], Process],  # noqa: F811
) -> None:
    # given: an unpinned deployment whose one replica went idle past its keep-alive and was unloaded
    serving_worker()
    version = registered[demo.BASE]
    deployment = deployed(version, pinned=False, keep_alive_s=60, wake_timeout_s=120)
    release = deployment.current_release
    assert replicas.load(release, 1) == ""
    (first,) = release.placements.all()
    settled(first, {P.LOADED})
    assert placing.placements_expire_idle(now=time.time() + 120) == 1
    settled(first, {P.UNLOADED})

    # when: several clients ask at once
    go = threading.Barrier(4)

    def ask(_: int) -> Any:
        go.wait(10)
        return sdk.completions.with_raw_response.create(
            model=NAME, prompt=PROMPT, max_tokens=8, temperature=0
        )

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))

    # then: all answered, by the release and version named in the headers, after exactly one load
    assert {(a.headers["x-moc-release"], a.headers["x-moc-version"]) for a in answers} == {
        (str(release.pk), str(version.pk))
    }
    assert len({a.parse().choices[0].text for a in answers}) == 1
    placements = Placement.objects.filter(version=version)
    assert placements.count() == 2
    assert placements.exclude(pk=first.pk).get().state == P.LOADED
    woken = ReleaseEvent.objects.filter(release=release, message__startswith="woken by a request")
    assert woken.count() == 1
