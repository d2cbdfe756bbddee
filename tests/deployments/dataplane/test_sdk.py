"""The official `openai` SDK against the data plane's ASGI app (its async client over httpx's ASGI
transport; device workers are stand-ins): what it parses, and the exceptions it raises for MOC's
errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import openai
import pytest
from asgiref.sync import async_to_sync

from apps.core.domain.roles import Role
from apps.core.models import ApiKey
from apps.core.redis_clients import redis_client
from apps.deployments.dataplane import app as dataplane
from apps.deployments.dataplane import counting
from apps.serving.resilience import Bulkhead
from tests.deployments.dataplane.standin import StandIn
from tests.deployments.live import placement_of, serving
from tests.serving.test_resilience import Holder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("beats_current")]

T = TypeVar("T")


@pytest.fixture
def sdk(
    make_key: Callable[..., tuple[ApiKey, str]],
) -> Callable[[Callable[[openai.AsyncOpenAI], Awaitable[T]]], T]:
    """Run `use(client)` with an SDK client of an operator's key, without retries."""
    _, secret = make_key(Role.OPERATOR)

    def run(use: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
        async def go() -> T:
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=dataplane.app))
            client = openai.AsyncOpenAI(
                api_key=secret, base_url="http://moc/v1", http_client=http, max_retries=0
            )
            try:
                return await use(client)
            finally:
                await client.close()
                await counting.flush()

        return async_to_sync(go)()

    return run


@pytest.fixture
def live() -> Iterator[tuple[Any, Any]]:
    """A serving deployment whose placement a stand-in worker answers: (deployment, stable)."""
    deployment, stable, _ = serving()
    worker = StandIn(placement_of(stable).device.queue)
    worker.start()
    yield deployment, stable
    worker.stop()


def test_the_sdk_lists_the_models(sdk: Any, live: tuple[Any, Any]) -> None:
    deployment, _ = live

    async def use(client: openai.AsyncOpenAI) -> list[str]:
        return [m.id async for m in client.models.list()]

    assert sdk(use) == [deployment.name]


def test_the_sdk_reads_a_completion(sdk: Any, live: tuple[Any, Any]) -> None:
    deployment, _ = live

    async def use(client: openai.AsyncOpenAI) -> Any:
        return await client.completions.create(model=deployment.name, prompt="Once", max_tokens=2)

    completion = sdk(use)
    assert completion.choices[0].text == "hello"
    assert completion.usage.total_tokens == 5


def test_the_sdk_streams_a_chat_with_its_usage(sdk: Any, live: tuple[Any, Any]) -> None:
    deployment, _ = live

    async def use(client: openai.AsyncOpenAI) -> tuple[str, Any]:
        stream = await client.chat.completions.create(
            model=deployment.name,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
        return text, usage

    text, usage = sdk(use)
    assert text == "hello"
    assert usage.completion_tokens == 2


def test_the_sdk_decodes_embeddings_it_asks_for_in_base64_by_default(sdk: Any, live: tuple[Any, Any]) -> None:
    deployment, _ = live

    async def use(client: openai.AsyncOpenAI) -> Any:
        return await client.embeddings.create(model=deployment.name, input=["a", "b"])

    assert [e.embedding for e in sdk(use).data] == [[0.5, -0.25], [0.5, -0.25]]


def test_the_sdk_raises_not_found_for_an_unknown_model(sdk: Any) -> None:
    async def use(client: openai.AsyncOpenAI) -> Any:
        return await client.completions.create(model="nobody", prompt="x")

    with pytest.raises(openai.NotFoundError) as caught:
        sdk(use)
    assert caught.value.code == "model_not_found"


def test_the_sdk_raises_bad_request_naming_the_parameter(sdk: Any, live: tuple[Any, Any]) -> None:
    deployment, _ = live

    async def use(client: openai.AsyncOpenAI) -> Any:
        return await client.completions.create(model=deployment.name, prompt="x", top_p=7)

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(use)
    assert caught.value.param == "top_p"


def test_the_sdk_raises_rate_limit_for_a_full_bulkhead(sdk: Any) -> None:
    deployment, _, _ = serving(max_concurrency=1, max_queue=0)
    holder = Holder(Bulkhead(redis_client(), f"deployment {deployment.pk}", concurrency=1, queue=0))
    holder.start()
    assert holder.got.wait(5)

    async def use(client: openai.AsyncOpenAI) -> Any:
        return await client.completions.create(model=deployment.name, prompt="x")

    try:
        with pytest.raises(openai.RateLimitError) as caught:
            sdk(use)
    finally:
        holder.finish()
    assert caught.value.response.headers["retry-after"]
