"""The demo LoRA adapter over the demo GPT-2: a second model sharing the base's weights, base untouched."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.models import demo
from apps.serving.domain.errors import BadInput
from apps.serving.runtimes import Loaded, LoadSpec, load

PROMPT = "The registry"
GREEDY = {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0, "stop": [], "seed": 0, "deadline": None}


def base_spec(demo_models: Path) -> LoadSpec:
    return LoadSpec(path=str(demo_models / demo.BASE), format="hf", kind="causal-lm", device="cpu")


def adapter_spec(demo_models: Path, base: Loaded | None) -> LoadSpec:
    return LoadSpec(
        path=str(demo_models / demo.LORA), format="safetensors", kind="adapter", device="cpu", base=base
    )


def logits(loaded: Any, text: str) -> Any:
    import torch

    ids = torch.tensor([loaded._tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        return loaded._model(input_ids=ids).logits


def loss(loaded: Any, text: str) -> float:
    """Mean next-token loss of `text` under the loaded model."""
    import torch

    ids = torch.tensor([loaded._tokenizer(text)["input_ids"][:128]])
    with torch.inference_mode():
        return float(loaded._model(input_ids=ids, labels=ids).loss)


@pytest.fixture
def base(demo_models: Path) -> Iterator[Loaded]:
    loaded = load(base_spec(demo_models))
    yield loaded
    loaded.close()


def words(text: str) -> set[str]:
    return {word.lower() for word in re.findall(r"[A-Za-z]{2,}", text)}


def test_the_adapter_predicts_its_status_reports_better_than_its_base(
    base: Loaded, demo_models: Path
) -> None:
    reports = demo.STATUS.read_text(encoding="utf-8")

    adapter = load(adapter_spec(demo_models, base))

    assert loss(adapter, reports) < loss(base, reports) - 2.0
    adapter.close()


def test_at_temperature_0_base_and_adapter_answer_in_different_readable_words(
    base: Loaded, demo_models: Path
) -> None:
    adapter = load(adapter_spec(demo_models, base))

    plain = base.generate(prompt=PROMPT, **GREEDY)["text"]
    adapted = adapter.generate(prompt=PROMPT, **GREEDY)["text"]

    assert adapted != plain
    # Words of the texts each learnt, several different ones: not one token and newlines.
    assert len(words(plain) & words(demo.CORPUS.read_text(encoding="utf-8"))) >= 5, plain
    assert len(words(adapted) & words(demo.STATUS.read_text(encoding="utf-8"))) >= 5, adapted
    adapter.close()


def test_loading_the_adapter_leaves_the_bases_outputs_unchanged(base: Loaded, demo_models: Path) -> None:
    import torch

    before_logits = logits(base, "A worker holds the models")
    before_text = base.generate(prompt=PROMPT, **GREEDY)

    adapter = load(adapter_spec(demo_models, base))

    assert torch.equal(logits(base, "A worker holds the models"), before_logits)
    assert base.generate(prompt=PROMPT, **GREEDY) == before_text
    assert not torch.allclose(logits(adapter, "A worker holds the models"), before_logits)
    adapter.close()


def test_the_adapter_shares_the_bases_weights_and_adds_only_its_own(base: Loaded, demo_models: Path) -> None:
    adapter = load(adapter_spec(demo_models, base))
    lora_file = (demo_models / demo.LORA / "adapter_model.safetensors").stat().st_size

    assert 0 < adapter.weights_bytes <= lora_file
    assert adapter.weights_bytes * 5 < base.weights_bytes
    assert adapter.measured_bytes >= adapter.weights_bytes
    adapter.close()


def test_the_adapter_needs_its_base_loaded_first(demo_models: Path) -> None:
    with pytest.raises(BadInput, match="an adapter needs its base loaded first"):
        load(adapter_spec(demo_models, None))


def test_the_adapter_refuses_a_base_that_was_unloaded(demo_models: Path) -> None:
    gone = load(base_spec(demo_models))
    gone.close()

    with pytest.raises(BadInput, match="base must be a transformers model loaded"):
        load(adapter_spec(demo_models, gone))


def test_closing_the_adapter_frees_it_and_the_base_serves_on(base: Loaded, demo_models: Path) -> None:
    before = base.generate(prompt=PROMPT, **GREEDY)
    adapter = load(adapter_spec(demo_models, base))

    unloaded = adapter.close()

    assert unloaded.verified, unloaded.detail
    assert base.generate(prompt=PROMPT, **GREEDY) == before


def test_closing_the_base_under_a_loaded_adapter_is_not_verified(demo_models: Path) -> None:
    base = load(base_spec(demo_models))
    adapter = load(adapter_spec(demo_models, base))

    unloaded = base.close()

    assert not unloaded.verified
    assert "1 adapter(s) loaded on it still hold its weights" in unloaded.detail
    assert adapter.generate(prompt=PROMPT, **GREEDY)["tokens_out"] == 16
    adapter.close()
