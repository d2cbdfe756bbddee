"""The demo LM's bad variants: real folders that pass validation as versions of demo-gpt2, load
with the serving runtime, and then fail every request of words (one) or answer far slower (the
other). Their behaviour in a real worker is in tests/integration/test_rollout.py."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from apps.models import demo
from apps.models.demo import variants
from apps.models.domain.states import ValidationState
from apps.serving.domain.errors import ErrorClass, classify
from tests.integration.releases import register_demo

PROMPT = {"prompt": "The fleet is green", "max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0}


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())


def _load(folder: Path) -> Any:
    from apps.serving import runtimes

    return runtimes.load(runtimes.LoadSpec(path=str(folder), format="hf", kind="causal-lm", device="cpu"))


def _generate(loaded: Any, prompt: str = PROMPT["prompt"]) -> dict[str, Any]:
    return loaded.generate(**{**PROMPT, "prompt": prompt}, stop=[], seed=None, deadline=None)


def test_the_failing_variant_has_a_vocabulary_smaller_than_its_tokenizer_s(
    demo_models: Path, demo_variants: Path
) -> None:
    from transformers import AutoTokenizer

    folder = demo_variants / variants.FAILING
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)

    assert _config(folder)["vocab_size"] == variants.FAILING_VOCAB
    assert len(tokenizer) == _config(demo_models / demo.BASE)["vocab_size"] > variants.FAILING_VOCAB
    assert max(tokenizer(PROMPT["prompt"])["input_ids"]) >= variants.FAILING_VOCAB


def test_the_slow_variant_is_the_same_family_deeper_with_the_demo_s_tokenizer(
    demo_models: Path, demo_variants: Path
) -> None:
    slow, base = _config(demo_variants / variants.SLOW), _config(demo_models / demo.BASE)

    assert (slow["n_layer"], slow["n_embd"]) == (variants.SLOW_LAYERS, variants.SLOW_HIDDEN)
    assert slow["model_type"] == base["model_type"] == "gpt2"
    assert slow["vocab_size"] == base["vocab_size"]
    tokenizers = [
        (f / "tokenizer.json").read_bytes() for f in (demo_variants / variants.SLOW, demo_models / demo.BASE)
    ]
    assert tokenizers[0] == tokenizers[1]
    assert (demo_variants / variants.SLOW / "model.safetensors").stat().st_size > 10 * 2**20


def test_making_them_again_keeps_what_exists(demo_models: Path, demo_variants: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in demo_variants.rglob("*")}
    lines: list[str] = []

    made = variants.make_variants(demo_variants, base=demo_models / demo.BASE, log=lines.append)

    assert [m.made for m in made] == [False, False]
    assert all("exists, kept" in line for line in lines)
    assert {p: p.stat().st_mtime_ns for p in demo_variants.rglob("*")} == before
    assert not list(demo_variants.glob(".*")), "no staging leftovers"


def test_without_the_demo_lm_nothing_is_made(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make it first"):
        variants.make_variants(tmp_path, log=lambda _line: None)
    assert not list(tmp_path.iterdir())


@pytest.mark.django_db
def test_a_scan_validates_them_and_they_become_versions_2_and_3_of_demo_gpt2(
    demo_models: Path, demo_variants: Path, settings: Any
) -> None:
    settings.MOC_MODEL_ROOTS = [str(demo_models), str(demo_variants)]

    versions = register_demo(demo_root=demo_models, variants_root=demo_variants)

    base = versions[demo.BASE]
    for name in variants.VARIANTS:
        version = versions[name]
        assert version.validation_state == ValidationState.VALID, version.validation_error
        assert version.model_id == base.model_id
        assert version.kind == base.kind
        assert version.sha256
    assert sorted(v.number for v in versions.values()) == [1, 2, 3]
    assert not type(base.model).objects.filter(name__in=variants.VARIANTS).exists()
    again = register_demo(demo_root=demo_models, variants_root=demo_variants)  # a second scan
    assert {name: v.pk for name, v in again.items()} == {name: v.pk for name, v in versions.items()}
    assert sorted(v.number for v in again.values()) == [1, 2, 3]


def test_the_failing_variant_loads_and_fails_a_prompt_of_words_inside_the_model(
    demo_variants: Path,
) -> None:
    loaded = _load(demo_variants / variants.FAILING)
    try:
        with pytest.raises(IndexError) as raised:
            _generate(loaded)
        # A prompt of single bytes stays inside the cut vocabulary: the weights themselves work.
        answer = _generate(loaded, "Q")
    finally:
        loaded.close()

    assert classify(raised.value) == ErrorClass.INTERNAL
    assert "index out of range" in str(raised.value)
    assert answer["tokens_out"] >= 1


def test_the_slow_variant_answers_far_slower_than_the_demo(demo_models: Path, demo_variants: Path) -> None:
    times: dict[str, float] = {}
    answers: dict[str, dict[str, Any]] = {}
    for name, folder in (
        (demo.BASE, demo_models / demo.BASE),
        (variants.SLOW, demo_variants / variants.SLOW),
    ):
        loaded = _load(folder)
        try:
            _generate(loaded)  # warm
            taken = []
            for _ in range(5):
                began = time.perf_counter()
                answers[name] = _generate(loaded)
                taken.append(time.perf_counter() - began)
            times[name] = statistics.median(taken)
            answers[name]["params"] = loaded.describe()["params"]
        finally:
            loaded.close()

    ratio = times[variants.SLOW] / times[demo.BASE]
    print(f"\nmedian of 5 greedy generations ({PROMPT['max_new_tokens']} tokens):", end=" ")
    print(f"demo {times[demo.BASE] * 1000:.1f} ms, slow {times[variants.SLOW] * 1000:.1f} ms, {ratio:.1f} x")
    assert answers[variants.SLOW]["tokens_out"] == PROMPT["max_new_tokens"]
    assert answers[variants.SLOW]["params"] > 10 * answers[demo.BASE]["params"]
