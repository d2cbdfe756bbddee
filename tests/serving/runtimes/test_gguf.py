"""GGUF files: refused without llama-cpp-python or with a damaged header; our side of the llama.cpp
calls checked against a stand-in module, since llama-cpp-python is not installed here."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.models import demo
from apps.serving.domain.errors import BadInput, CorruptFile, RuntimeMissing
from apps.serving.runtimes import Loaded, LoadSpec, load, runtime_available

GREEDY = {"max_new_tokens": 10, "temperature": 0.0, "top_p": 1.0, "stop": [], "seed": 5, "deadline": None}


class FakeLlama:
    """Stands in for llama_cpp.Llama: streams "Hello world!" in pieces, then end-of-text. Records the
    calls made to it in `calls` (not the instances, whose release the unload checks)."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, *, model_path: str, embedding: bool, verbose: bool, **options: Any) -> None:
        self.options = {"model_path": model_path, "embedding": embedding, **options}
        FakeLlama.calls.append(("init", self.options))

    def n_ctx(self) -> int:
        return self.options["n_ctx"]

    metadata: dict[str, Any] = {}  # the file's key/values, as llama.cpp reads them

    def n_vocab(self) -> int:
        return 256

    def token_bos(self) -> int:
        return 1

    def token_eos(self) -> int:
        return 2

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Bytes as ids; with `special`, the text of the start and end-of-text tokens as their ids."""
        ids = list(text)
        if special:
            for token, name in ((1, b"<s>"), (2, b"</s>")):
                ids = _replaced(ids, list(name), token)
        return [1] * add_bos + ids

    def detokenize(self, ids: list[int], special: bool = False) -> bytes:
        names = {1: b"<s>", 2: b"</s>"} if special else {}
        return b"".join(names.get(i, bytes([i]) if i > 2 else b"") for i in ids)

    def create_completion(
        self, ids: list[int], *, max_tokens: int, **options: Any
    ) -> Iterator[dict[str, Any]]:
        FakeLlama.calls.append(("completion", {"ids": ids, "max_tokens": max_tokens, **options}))
        pieces = ["Hel", "lo ", "wor", "ld!"]
        for piece in pieces[:max_tokens]:
            yield {"choices": [{"text": piece, "finish_reason": None}]}
        yield {"choices": [{"text": "", "finish_reason": "stop" if max_tokens > len(pieces) else "length"}]}

    def create_embedding(self, texts: list[str]) -> dict[str, Any]:
        return {
            "data": [{"embedding": [3.0, 4.0]} for _ in texts],
            "usage": {"prompt_tokens": 2 * len(texts)},
        }

    def close(self) -> None:
        FakeLlama.calls.append(("close", {}))


def _replaced(ids: list[int], pattern: list[int], token: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if ids[i : i + len(pattern)] == pattern:
            out.append(token)
            i += len(pattern)
        else:
            out.append(ids[i])
            i += 1
    return out


@pytest.fixture
def fake_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> type[FakeLlama]:
    module = types.ModuleType("llama_cpp")
    module.Llama = FakeLlama
    module.LLAMA_SPLIT_MODE_NONE = 0
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    FakeLlama.calls.clear()
    return FakeLlama


def gguf(demo_models: Path, kind: str = "causal-lm") -> LoadSpec:
    return LoadSpec(path=str(demo_models / demo.GGUF), format="gguf", kind=kind, device="cpu")


@pytest.fixture
def llama(demo_models: Path, fake_llama_cpp: type[FakeLlama]) -> Loaded:
    return load(gguf(demo_models))


def test_gguf_is_refused_where_llama_cpp_is_not_installed(demo_models: Path) -> None:
    if runtime_available("gguf")[0]:
        pytest.skip("llama-cpp-python is installed here")

    with pytest.raises(
        RuntimeMissing, match="^GGUF needs llama-cpp-python, which is not installed on this worker$"
    ):
        load(gguf(demo_models))


def test_a_truncated_gguf_file_is_refused_before_llama_cpp_sees_it(
    demo_models: Path, tmp_path: Path, fake_llama_cpp: type[FakeLlama]
) -> None:
    data = (demo_models / demo.GGUF).read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptFile, match="cut.gguf fails its header check"):
        load(LoadSpec(path=str(path), format="gguf", kind="causal-lm", device="cpu"))
    assert fake_llama_cpp.calls == []


def test_the_context_is_the_models_own_capped_and_no_layer_goes_to_a_gpu_on_cpu(
    llama: Loaded, fake_llama_cpp: type[FakeLlama], demo_models: Path
) -> None:
    [(_, options)] = fake_llama_cpp.calls

    assert (options["n_ctx"], options["n_gpu_layers"]) == (128, 0)
    assert llama.weights_bytes == (demo_models / demo.GGUF).stat().st_size
    assert llama.measured_bytes >= llama.weights_bytes


def test_generation_turns_llama_cpps_samplers_off_but_temperature_and_top_p(
    llama: Loaded, fake_llama_cpp: type[FakeLlama]
) -> None:
    result = llama.generate(prompt="hi", **GREEDY)

    assert (result["text"], result["finish_reason"]) == ("Hello world!", "eos")
    options = dict(fake_llama_cpp.calls)["completion"]
    assert options["stream"] is True
    assert (options["top_k"], options["min_p"], options["repeat_penalty"]) == (0, 0.0, 1.0)
    assert (options["temperature"], options["top_p"], options["seed"]) == (0.0, 1.0, 5)


def test_generation_cuts_at_our_stop_strings_and_reports_length(llama: Loaded) -> None:
    stopped = llama.generate(prompt="hi", **GREEDY | {"stop": ["wor"]})
    short = llama.generate(prompt="hi", **GREEDY | {"max_new_tokens": 2})

    assert (stopped["text"], stopped["finish_reason"]) == ("Hello ", "stop")
    assert (short["text"], short["finish_reason"]) == ("Hello ", "length")


def test_a_prompt_that_fills_the_context_is_refused(llama: Loaded) -> None:
    with pytest.raises(BadInput, match="prompt is 201 tokens; the model's context holds 128"):
        llama.generate(prompt="x" * 200, **GREEDY)


def test_a_gguf_embedding_model_gives_unit_vectors(
    demo_models: Path, fake_llama_cpp: type[FakeLlama]
) -> None:
    encoder = load(gguf(demo_models, kind="embedding"))

    result = encoder.embed(texts=["a", "b"], deadline=None)

    assert result == {"embeddings": [[0.6, 0.8], [0.6, 0.8]], "dim": 2, "tokens_in": 4}
    assert dict(fake_llama_cpp.calls)["init"]["embedding"] is True


def test_closing_frees_the_llama_context_at_once(llama: Loaded, fake_llama_cpp: type[FakeLlama]) -> None:
    unloaded = llama.close()

    assert fake_llama_cpp.calls[-1] == ("close", {})
    assert unloaded.verified, unloaded.detail


CHAT = {"max_tokens": 4, "temperature": 0.0, "top_p": 1.0, "n": 1, "stop": [], "seed": 5, "logprobs": None}


def test_a_chat_prompt_reads_its_templates_control_tokens_as_tokens_and_adds_no_second_bos(
    llama: Loaded, fake_llama_cpp: type[FakeLlama], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What llama-cpp-python's own chat handler does: tokenize(special=True, add_bos=False).
    template = "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{{ eos_token }}{% endfor %}"
    monkeypatch.setattr(FakeLlama, "metadata", {"tokenizer.chat_template": template})

    result = llama.chat(messages=[{"role": "user", "content": "hi"}], deadline=None, **CHAT)

    assert result["choices"][0]["text"] == "Hello world!"
    assert dict(fake_llama_cpp.calls)["completion"]["ids"] == [1, *b"[hi]", 2]


def test_a_completion_of_token_ids_goes_to_llama_cpp_as_they_are_checked_against_the_vocabulary(
    llama: Loaded, fake_llama_cpp: type[FakeLlama]
) -> None:
    complete = CHAT | {"echo": False}

    llama.complete(prompts=[[72, 105]], deadline=None, **complete)
    ids = dict(fake_llama_cpp.calls)["completion"]["ids"]
    llama.complete(prompts=[[]], deadline=None, **complete)

    assert (ids, fake_llama_cpp.calls[-1][1]["ids"]) == ([72, 105], [1])
    with pytest.raises(BadInput, match="prompt holds token id 300; this model's vocabulary has ids 0 to 255"):
        llama.complete(prompts=[[72, 300]], deadline=None, **complete)
