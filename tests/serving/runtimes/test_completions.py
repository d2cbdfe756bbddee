"""Completions and chat on the demo GPT-2 through the transformers runtime: choices, seeds,
log-probabilities checked against torch directly, echo, streaming, chat templates, embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.deployments.domain import openai as api
from apps.models import demo
from apps.models.domain.chat_template import DEFAULT_TEMPLATE, render
from apps.serving.domain.errors import BadInput
from apps.serving.domain.wire import Token
from apps.serving.runtimes import Loaded, LoadSpec, load
from tests.serving.doubles import COMPLETE

torch = pytest.importorskip("torch")

PROMPT = "The registry"


def args(**overrides: Any) -> dict[str, Any]:
    return {**COMPLETE, "prompts": [PROMPT], "max_tokens": 10, "deadline": None} | overrides


def chat_args(**overrides: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "What does the registry hold?"}],
        "max_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
        "n": 1,
        "stop": [],
        "seed": None,
        "logprobs": None,
        "deadline": None,
    } | overrides


@pytest.fixture(scope="module")
def lm(demo_models: Path) -> Iterator[Loaded]:
    loaded = load(LoadSpec(path=str(demo_models / demo.BASE), format="hf", kind="causal-lm", device="cpu"))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def reference(demo_models: Path) -> tuple[Any, Any]:
    """transformers' own model and tokenizer for the demo folder, to check the runtime against."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = demo_models / demo.BASE
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)


def log_softmax_of(model: Any, ids: list[int]) -> Any:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)


def test_a_greedy_completion_gives_what_generate_gives(lm: Loaded) -> None:
    generated = lm.generate(
        prompt=PROMPT, max_new_tokens=10, temperature=0.0, top_p=1.0, stop=[], seed=None, deadline=None
    )

    result = lm.complete(**args())

    (choice,) = result["choices"]
    assert (choice["index"], choice["text"]) == (0, generated["text"])
    assert (choice["tokens"], choice["prompt"]) == (None, None)
    assert result["usage"] == {"prompt_tokens": generated["tokens_in"], "completion_tokens": 10}


def test_echo_gives_the_prompt_tokens_with_the_log_probabilities_torch_computes(
    lm: Loaded, reference: tuple[Any, Any]
) -> None:
    model, tokenizer = reference
    text = PROMPT + " holds every model, and the fleet runs them." * 8  # scored in several pieces
    ids = tokenizer(text)["input_ids"]
    assert 64 < len(ids) < 128
    expected = log_softmax_of(model, ids)

    result = lm.complete(**args(prompts=[ids], max_tokens=1, echo=True, logprobs=2))

    prompt = result["choices"][0]["prompt"]
    assert [t["id"] for t in prompt] == ids
    assert "".join(t["text"] for t in prompt) == text
    assert prompt[0]["logprob"] is None
    assert [t["logprob"] for t in prompt[1:]] == pytest.approx(
        [float(expected[i - 1, ids[i]]) for i in range(1, len(ids))], abs=1e-4
    )
    best = torch.topk(expected[0], 2)
    assert [lp for _, lp in prompt[1]["top"]] == pytest.approx(best.values.tolist(), abs=1e-4)
    assert [text for text, _ in prompt[1]["top"]] == [tokenizer.decode([i]) for i in best.indices.tolist()]


def test_echo_with_max_tokens_0_scores_the_prompt_as_max_tokens_1_does_and_makes_nothing(
    lm: Loaded, reference: tuple[Any, Any]
) -> None:
    """How older harnesses (lm-eval's gpt3, HELM) read a text's likelihood: the prompt alone."""
    _, tokenizer = reference
    ids = tokenizer(PROMPT)["input_ids"]
    heard: list[tuple[Any, ...]] = []

    alone = lm.complete(**args(max_tokens=0, echo=True, logprobs=2), on_delta=lambda *d: heard.append(d))
    with_one = lm.complete(**args(max_tokens=1, echo=True, logprobs=2))

    (choice,) = alone["choices"]
    assert choice["prompt"] == with_one["choices"][0]["prompt"]
    assert [t["id"] for t in choice["prompt"]] == ids
    assert (choice["text"], choice["tokens"], choice["finish_reason"]) == ("", [], "length")
    assert alone["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0}
    assert heard[-1] == (0, "", [], "length")
    # ... and through the protocol's shapes: the prompt's text and its logprobs, the first null
    (answer,) = api.completion("cmpl-1", 7, "demo", alone, echo=True, logprobs=2)["choices"]
    assert (answer["text"], answer["finish_reason"]) == (PROMPT, "length")
    assert answer["logprobs"]["tokens"] == [t["text"] for t in choice["prompt"]]
    assert answer["logprobs"]["token_logprobs"] == [None] + [t["logprob"] for t in choice["prompt"][1:]]


def test_echo_with_max_tokens_0_scores_a_prompt_that_fills_the_whole_context(lm: Loaded) -> None:
    context = lm.describe()["context_length"]
    ids = [(7 * i) % 1000 + 10 for i in range(context)]

    result = lm.complete(**args(prompts=[ids], max_tokens=0, echo=True, logprobs=0))

    assert [t["id"] for t in result["choices"][0]["prompt"]] == ids
    with pytest.raises(BadInput, match="leaves no room to generate"):
        lm.complete(**args(prompts=[ids], max_tokens=1, echo=True, logprobs=0))
    with pytest.raises(BadInput, match=f"is {context + 1} tokens; the model's context holds {context}$"):
        lm.complete(**args(prompts=[[*ids, 11]], max_tokens=0, echo=True, logprobs=0))


def test_max_tokens_0_without_echo_is_refused_naming_it(lm: Loaded) -> None:
    with pytest.raises(BadInput, match="max_tokens must be a whole number of at least 1"):
        lm.complete(**args(max_tokens=0))


def test_each_generated_token_carries_its_log_probability_and_the_top_alternatives(
    lm: Loaded, reference: tuple[Any, Any]
) -> None:
    model, tokenizer = reference
    prompt_ids = tokenizer(PROMPT)["input_ids"]

    choice = lm.complete(**args(max_tokens=6, logprobs=3))["choices"][0]

    tokens = choice["tokens"]
    assert "".join(t["text"] for t in tokens) == choice["text"]
    ids = prompt_ids + [t["id"] for t in tokens]
    expected = log_softmax_of(model, ids)
    for k, token in enumerate(tokens):
        position = len(prompt_ids) + k - 1
        assert token["logprob"] == pytest.approx(float(expected[position, token["id"]]), abs=1e-4)
        assert len(token["top"]) == 3
        # greedy: the chosen token is the most likely one
        assert token["top"][0][1] == pytest.approx(token["logprob"], abs=1e-6)


def test_n_choices_use_the_seed_then_the_next_seeds(lm: Loaded) -> None:
    sampled = args(temperature=1.0, max_tokens=12, seed=40)

    together = lm.complete(**sampled | {"n": 3})["choices"]

    alone = [lm.complete(**sampled | {"seed": 40 + j})["choices"][0]["text"] for j in range(3)]
    assert [c["text"] for c in together] == alone
    assert [c["index"] for c in together] == [0, 1, 2]
    assert len(set(alone)) > 1


def test_several_prompts_give_their_choices_in_prompt_order(lm: Loaded, reference: tuple[Any, Any]) -> None:
    _, tokenizer = reference
    ids = tokenizer("A worker holds")["input_ids"]

    result = lm.complete(**args(prompts=[PROMPT, ids], n=2, max_tokens=4))

    texts = [c["text"] for c in result["choices"]]
    assert texts[0] == texts[1] == lm.complete(**args(max_tokens=4))["choices"][0]["text"]
    assert (
        texts[2]
        == texts[3]
        == lm.complete(**args(prompts=["A worker holds"], max_tokens=4))["choices"][0]["text"]
    )
    assert result["usage"]["prompt_tokens"] == len(tokenizer(PROMPT)["input_ids"]) + len(ids)
    assert result["usage"]["completion_tokens"] == 16


def test_streamed_deltas_add_up_to_the_text_and_the_last_carries_the_finish_reason(lm: Loaded) -> None:
    heard: list[tuple[int, str, list[Token] | None, str | None]] = []

    result = lm.complete(**args(max_tokens=12, logprobs=0), on_delta=lambda *delta: heard.append(delta))

    choice = result["choices"][0]
    assert len(heard) > 3  # token by token, not all at the end
    assert "".join(text for _, text, _, _ in heard) == choice["text"]
    assert [t.id for _, _, tokens, _ in heard for t in tokens or []] == [t["id"] for t in choice["tokens"]]
    assert [reason for *_, reason in heard] == [None] * (len(heard) - 1) + ["length"]


def test_a_stream_never_sends_part_of_a_stop_string(lm: Loaded) -> None:
    full = lm.complete(**args(max_tokens=30))["choices"][0]["text"]
    stop = full[8:14]
    heard: list[str] = []

    result = lm.complete(**args(max_tokens=30, stop=[stop]), on_delta=lambda _i, text, *_: heard.append(text))

    choice = result["choices"][0]
    assert (choice["text"], choice["finish_reason"]) == (full[: full.find(stop)], "stop")
    # what was sent cannot be taken back: had any of the stop been sent, the deltas would hold it
    assert "".join(heard) == choice["text"]


def test_a_token_id_outside_the_vocabulary_is_refused_by_the_prompt_it_is_in(lm: Loaded) -> None:
    with pytest.raises(BadInput, match=r"prompts\[1\] holds token id 99999"):
        lm.complete(**args(prompts=[PROMPT, [1, 99999]]))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"n": 0}, "n must be"),
        ({"n": 200}, "n must be"),
        ({"logprobs": 6}, "logprobs must be a whole number from 0 to 5"),
        ({"echo": "yes"}, "echo"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"prompts": []}, "prompts"),
        ({"prompts": [[1, -2]]}, r"prompts\[0\]"),
    ],
)
def test_a_bad_completion_parameter_is_refused_by_name(
    lm: Loaded, change: dict[str, Any], named: str
) -> None:
    with pytest.raises(BadInput, match=named):
        lm.complete(**args(**change))


def test_chat_renders_the_models_own_template_and_completes_it(
    lm: Loaded, reference: tuple[Any, Any]
) -> None:
    _, tokenizer = reference
    messages = chat_args()["messages"]
    prompt = render(tokenizer.chat_template, messages, bos_token="", eos_token="")
    assert prompt == "User: What does the registry hold?\nAssistant:"

    result = lm.chat(**chat_args())

    expected = lm.complete(**args(prompts=[tokenizer(prompt)["input_ids"]], max_tokens=8))
    assert result == expected


def test_chat_without_max_tokens_generates_as_far_as_the_context_allows(lm: Loaded) -> None:
    result = lm.chat(**chat_args(max_tokens=None, temperature=1.0, seed=5, stop=[]))

    usage = result["usage"]
    assert usage["completion_tokens"] >= 1
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 128


def test_chat_logprobs_allow_twenty_alternatives(lm: Loaded) -> None:
    tokens = lm.chat(**chat_args(max_tokens=2, logprobs=20))["choices"][0]["tokens"]

    assert [len(t["top"]) for t in tokens] == [20, 20]


def test_a_chat_message_without_content_is_refused_by_its_index(lm: Loaded) -> None:
    with pytest.raises(BadInput, match=r"messages\[1\]"):
        lm.chat(**chat_args(messages=[{"role": "user", "content": "hi"}, {"role": "assistant"}]))


def test_a_hostile_chat_template_is_refused_as_bad_input_and_never_runs(
    demo_models: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "MARKER"
    loaded = load(LoadSpec(path=str(demo_models / demo.BASE), format="hf", kind="causal-lm", device="cpu"))
    loaded._tokenizer.chat_template = (
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"
    )
    try:
        with pytest.raises(BadInput, match="'__globals__', a Python internal"):
            loaded.chat(**chat_args())
    finally:
        loaded.close()
    assert not marker.exists()


def test_a_model_without_a_chat_template_chats_by_the_default_one(demo_models: Path) -> None:
    loaded = load(LoadSpec(path=str(demo_models / demo.BASE), format="hf", kind="causal-lm", device="cpu"))
    loaded._tokenizer.chat_template = None
    try:
        result = loaded.chat(**chat_args())
        prompt = render(
            DEFAULT_TEMPLATE, chat_args()["messages"], bos_token="<|endoftext|>", eos_token="<|endoftext|>"
        )
        expected = loaded.complete(**args(prompts=[loaded._chat_prompt(prompt)], max_tokens=8))
    finally:
        loaded.close()
    assert result == expected


def test_embed_with_dimensions_keeps_the_leading_values_as_a_unit_vector(lm: Loaded) -> None:
    full = lm.embed(texts=["a worker"], deadline=None)["embeddings"][0]

    result = lm.embed(texts=["a worker"], deadline=None, dimensions=16)

    (vector,) = result["embeddings"]
    norm = sum(x * x for x in full[:16]) ** 0.5
    assert result["dim"] == 16
    assert vector == pytest.approx([x / norm for x in full[:16]], abs=1e-6)
    with pytest.raises(BadInput, match="dimensions is 65; this model's embeddings have 64"):
        lm.embed(texts=["a worker"], deadline=None, dimensions=65)


def test_embed_takes_token_ids_as_it_takes_their_text(lm: Loaded, reference: tuple[Any, Any]) -> None:
    _, tokenizer = reference
    ids = tokenizer("a worker")["input_ids"]

    by_ids = lm.embed(texts=[ids], deadline=None)["embeddings"][0]

    assert by_ids == pytest.approx(lm.embed(texts=["a worker"], deadline=None)["embeddings"][0], abs=1e-6)
    with pytest.raises(BadInput, match=r"texts\[0\]"):
        lm.embed(texts=[[]], deadline=None)
