"""The demo GPT-2 folder through the transformers runtime on the cpu: load, generate, embed, unload."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from apps.models import demo
from apps.serving.domain.errors import BadInput, ErrorClass, Transient, classify
from apps.serving.runtimes import DeadlineExceeded, Loaded, LoadSpec, load

PROMPT = "The registry"


def greedy(**overrides: Any) -> dict[str, Any]:
    return {
        "max_new_tokens": 12,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": [],
        "seed": None,
        "deadline": None,
    } | overrides


def sampled(seed: int, **overrides: Any) -> dict[str, Any]:
    return greedy(max_new_tokens=24, temperature=1.0, top_p=0.95, seed=seed) | overrides


def flat(result: dict[str, Any]) -> list[float]:
    return [x for vector in result["embeddings"] for x in vector]


def spec(demo_models: Path, kind: str = "causal-lm") -> LoadSpec:
    return LoadSpec(path=str(demo_models / demo.BASE), format="hf", kind=kind, device="cpu")


@pytest.fixture(scope="module")
def lm(demo_models: Path) -> Iterator[Loaded]:
    loaded = load(spec(demo_models))
    yield loaded
    loaded.close()


def test_load_measures_at_least_the_bytes_of_the_parameters(lm: Loaded, demo_models: Path) -> None:
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(demo_models / demo.BASE, local_files_only=True)
    parameter_bytes = sum(p.numel() * p.element_size() for p in reference.parameters())

    assert lm.weights_bytes >= parameter_bytes > 0
    assert lm.measured_bytes >= lm.weights_bytes
    assert lm.load_seconds > 0
    assert (lm.runtime, lm.device, lm.tasks) == ("transformers", "cpu", frozenset({"generate", "embed"}))


def test_describe_gives_the_facts_the_ui_shows(lm: Loaded) -> None:
    facts = lm.describe()

    assert facts["architecture"] == "GPT2LMHeadModel"
    assert (facts["dtype"], facts["context_length"], facts["device"]) == ("float32", 128, "cpu")
    assert facts["params"] > 100_000


def test_greedy_generation_equals_transformers_own_greedy_search(lm: Loaded, demo_models: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = demo_models / demo.BASE
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    for prompt in (PROMPT, "A worker holds", "GPU"):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        out = model.generate(
            ids, do_sample=False, max_new_tokens=12, repetition_penalty=1.0, top_k=None, temperature=None
        )
        expected = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

        assert lm.generate(prompt=prompt, **greedy())["text"] == expected


def test_the_same_seed_gives_the_same_text_and_another_seed_another(lm: Loaded) -> None:
    first = lm.generate(prompt=PROMPT, **sampled(seed=7))

    assert lm.generate(prompt=PROMPT, **sampled(seed=7)) == first
    assert lm.generate(prompt=PROMPT, **sampled(seed=8))["text"] != first["text"]
    assert first["seed"] == 7


def test_generation_stops_after_max_new_tokens(lm: Loaded) -> None:
    result = lm.generate(prompt=PROMPT, **greedy(max_new_tokens=5))

    assert (result["tokens_out"], result["finish_reason"]) == (5, "length")


def test_generation_cuts_the_text_at_the_first_stop_string(lm: Loaded) -> None:
    full = lm.generate(prompt=PROMPT, **sampled(seed=3))["text"]
    stop = full[6:9]
    assert len(stop) == 3

    result = lm.generate(prompt=PROMPT, **sampled(seed=3, stop=["\u2603", stop]))

    assert (result["text"], result["finish_reason"]) == (full[: full.find(stop)], "stop")


def test_max_new_tokens_is_capped_by_what_the_context_has_left(lm: Loaded) -> None:
    prompt = " ".join(["model"] * 100)

    result = lm.generate(prompt=prompt, **greedy(max_new_tokens=100))

    assert result["tokens_in"] + result["tokens_out"] <= 128
    assert result["tokens_out"] >= 1


def test_a_prompt_longer_than_the_context_is_refused_by_name(lm: Loaded) -> None:
    with pytest.raises(BadInput, match=r"prompt is \d+ tokens; the model's context holds 128"):
        lm.generate(prompt=" ".join(["registry"] * 300), **greedy())


def test_a_bad_sampling_parameter_is_refused_as_bad_input(lm: Loaded) -> None:
    with pytest.raises(BadInput, match="top_p"):
        lm.generate(prompt=PROMPT, **greedy(top_p=0))


def test_a_passed_deadline_ends_generation_with_a_timeout(lm: Loaded) -> None:
    with pytest.raises(DeadlineExceeded) as caught:
        lm.generate(prompt=PROMPT, **greedy(deadline=time.monotonic() - 1))

    assert classify(caught.value) == ErrorClass.TIMEOUT


def test_embed_gives_one_unit_vector_per_text(lm: Loaded) -> None:
    result = lm.embed(texts=["a worker", "the registry holds models"], deadline=None)

    assert result["dim"] == 64
    assert [len(v) for v in result["embeddings"]] == [64, 64]
    assert [sum(x * x for x in v) for v in result["embeddings"]] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert result["tokens_in"] > 2


def test_embed_gives_a_text_the_same_vector_alone_as_beside_a_longer_one(lm: Loaded) -> None:
    alone = lm.embed(texts=["GPU"], deadline=None)["embeddings"][0]

    padded = lm.embed(texts=["the registry holds many models", "GPU"], deadline=None)["embeddings"][1]

    assert padded == pytest.approx(alone, abs=1e-5)


def test_embed_refuses_a_text_longer_than_the_context_by_its_index(lm: Loaded) -> None:
    with pytest.raises(BadInput, match=r"texts\[1\] is \d+ tokens"):
        lm.embed(texts=["short", " ".join(["registry"] * 300)], deadline=None)


def test_embed_refuses_an_empty_list(lm: Loaded) -> None:
    with pytest.raises(BadInput, match="texts"):
        lm.embed(texts=[], deadline=None)


def test_an_embedding_model_embeds_like_the_lm_and_does_not_generate(lm: Loaded, demo_models: Path) -> None:
    encoder = load(spec(demo_models, kind="embedding"))
    texts = ["a worker", "GPU"]

    assert encoder.tasks == frozenset({"embed"})
    assert flat(encoder.embed(texts=texts, deadline=None)) == pytest.approx(
        flat(lm.embed(texts=texts, deadline=None)), abs=1e-5
    )
    with pytest.raises(BadInput, match="answers embed requests, not generate"):
        encoder.generate(prompt=PROMPT, **greedy())
    encoder.close()


def test_concurrent_generation_gives_each_seed_what_it_gives_alone(lm: Loaded) -> None:
    seeds = list(range(8))
    alone = [lm.generate(prompt=PROMPT, **sampled(seed)) for seed in seeds]
    start = threading.Barrier(len(seeds))

    def generate(seed: int) -> dict[str, Any]:
        start.wait()
        return lm.generate(prompt=PROMPT, **sampled(seed))

    with ThreadPoolExecutor(len(seeds)) as pool:
        together = list(pool.map(generate, seeds))

    assert together == alone
    assert len({r["text"] for r in alone}) > 1


def test_close_frees_the_model_and_later_requests_are_refused(demo_models: Path) -> None:
    loaded = load(spec(demo_models))
    model = weakref.ref(loaded._model)

    unloaded = loaded.close()
    gc.collect()

    assert unloaded.verified, unloaded.detail
    assert model() is None
    with pytest.raises(Transient, match="unloaded"):
        loaded.generate(prompt=PROMPT, **greedy())
    assert loaded.close().detail == "already unloaded"


def test_close_is_not_verified_while_a_request_still_holds_the_model(demo_models: Path) -> None:
    loaded = load(spec(demo_models))
    held = loaded._model

    unloaded = loaded.close()

    assert not unloaded.verified
    assert "still referenced" in unloaded.detail
    del held
