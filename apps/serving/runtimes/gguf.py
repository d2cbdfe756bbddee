"""GGUF files through llama.cpp (the llama-cpp-python package), on workers that have it.

The file's header is read by MOC's own GGUF reader first, and a file that fails its checks is
refused before llama.cpp parses it: llama.cpp's loader has had memory-safety bugs with crafted
files, MOC's reader is bounds-checked Python.

This path is written against llama-cpp-python's documented API but is not exercised by the test
suite, which runs where the package is not installed; only the refusals before it are tested.
"""

from __future__ import annotations

import importlib
import secrets
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from apps.models.formats.gguf.reader import read
from apps.serving.domain.errors import BadInput, CorruptFile, RuntimeMissing, ServingError
from apps.serving.runtimes import guard, memory
from apps.serving.runtimes.base import (
    EMBED,
    GENERATE,
    Loaded,
    LoadSpec,
    check_deadline,
    first_stop,
    serving_error,
    unit,
)

MISSING = "GGUF needs llama-cpp-python, which is not installed on this worker"
# The KV cache llama.cpp allocates is sized by n_ctx; the model's own maximum (often 128k) would
# dwarf the weights. 4096 is the context MOC's VRAM estimate assumes by default.
CONTEXT_CAP = 4096


class LlamaLoaded(Loaded):
    runtime = "llama.cpp"
    token_prompts = True

    def __init__(self, *, llama: Any, file: str, facts: dict[str, Any], **figures: Any) -> None:
        super().__init__(**figures)
        self._llama = llama
        # One llama.cpp context evaluates one sequence at a time.
        self._lock = threading.Lock()
        self._facts = {"file": file, "n_ctx": llama.n_ctx(), **facts}

    def _generate(
        self,
        *,
        prompt: str | list[int],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stops: list[str],
        seed: int | None,
        deadline: float | None,
    ) -> dict[str, Any]:
        llama = self._live()
        seed = secrets.randbits(32) if seed is None else seed
        with self._lock:
            ids = self._prompt_ids(llama, prompt)
            room = llama.n_ctx() - len(ids)
            if room < 1:
                raise BadInput(
                    f"prompt is {len(ids)} tokens; the model's context holds {llama.n_ctx()},"
                    " which leaves no room to generate"
                )
            budget = min(max_new_tokens, room)
            check_deadline(deadline, "before the prompt was read")
            # Stop strings are ours, so a "stop" from llama.cpp can only mean end-of-text; its own
            # samplers beyond temperature and top_p are switched off.
            stream = llama.create_completion(
                ids,
                max_tokens=budget,
                temperature=float(temperature),
                top_p=float(top_p),
                top_k=0,
                min_p=0.0,
                repeat_penalty=1.0,
                seed=seed % 2**32,
                stream=True,
            )
            text, finish, steps = "", "length", 0
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    text += choice["text"]
                    steps += 1
                    cut = first_stop(text, stops) if stops else None
                    if cut is not None:
                        text, finish = text[:cut], "stop"
                        break
                    if choice.get("finish_reason") == "stop":
                        finish = "eos"
                    check_deadline(deadline, f"after {steps} of {budget} tokens")
            finally:
                stream.close()
            tokens_out = len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        return {
            "text": text,
            "tokens_in": len(ids),
            "tokens_out": tokens_out,
            "finish_reason": finish,
            "seed": seed,
        }

    def _chat_prompt(self, text: str) -> list[int]:
        """A rendered chat prompt's tokens as llama-cpp-python's own chat handler makes them: the
        template's control tokens (<|im_start|>, [INST], its bos_token) read as the special tokens
        they are, not as their characters, and no start-of-text token added before what the
        template wrote."""
        llama = self._live()
        with self._lock:
            return list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _prompt_ids(self, llama: Any, prompt: str | list[int]) -> list[int]:
        """A completion's prompt as token ids: a text tokenized as plain text after the
        start-of-text token, token ids checked against the vocabulary (llama.cpp does not check)."""
        if isinstance(prompt, str):
            return list(llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False))
        vocabulary = llama.n_vocab()
        outside = next((i for i in prompt if i >= vocabulary), None)
        if outside is not None:
            raise BadInput(
                f"prompt holds token id {outside}; this model's vocabulary has ids 0 to {vocabulary - 1}"
            )
        if not prompt:
            if llama.token_bos() < 0:
                raise BadInput("prompt is empty and this model has no start-of-text token to begin from")
            return [llama.token_bos()]
        return prompt

    def _chat_template(self) -> tuple[str | None, str, str]:
        """The file's tokenizer.chat_template (rendered in MOC's sandbox, not by llama.cpp's own
        formatter) and its start and end-of-text tokens' text."""
        llama = self._live()
        template = llama.metadata.get("tokenizer.chat_template")

        def text(token: int) -> str:
            if token < 0:
                return ""
            return bytes(llama.detokenize([token], special=True)).decode("utf-8", "replace")

        return (
            template if isinstance(template, str) else None,
            text(llama.token_bos()),
            text(llama.token_eos()),
        )

    def _embed(self, *, texts: list[str | list[int]], deadline: float | None) -> dict[str, Any]:
        llama = self._live()
        if any(isinstance(text, list) for text in texts):
            raise BadInput("texts: token-id inputs are not available for this runtime")
        check_deadline(deadline, "before the texts were read")
        with self._lock:
            try:
                result = llama.create_embedding(texts)
            except ValueError as exc:  # a text longer than the context
                raise BadInput(str(exc)[:2000]) from exc
        vectors = [unit(_pooled(item["embedding"])) for item in result["data"]]
        return {"embeddings": vectors, "dim": len(vectors[0]), "tokens_in": result["usage"]["prompt_tokens"]}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._facts}

    def _live(self) -> Any:
        llama = self._llama
        if llama is None:
            self._open()
        return llama

    def _drop(self) -> tuple[list[weakref.ref[Any]], str]:
        llama, self._llama = self._llama, None
        refs = [weakref.ref(llama)]
        # Frees the model and its context now rather than at collection; the lock waits out a
        # request still evaluating, which would otherwise run on freed memory.
        with self._lock:
            llama.close()
        return refs, ""


def load(spec: LoadSpec) -> LlamaLoaded:
    """The file checked by MOC's reader, then loaded by llama.cpp, all layers on the GPU for cuda."""
    path = _model_file(Path(spec.path))
    header = _checked_header(path)
    try:
        llama_cpp = importlib.import_module("llama_cpp")
    except ImportError:
        raise RuntimeMissing(MISSING) from None
    on_cuda = spec.device.startswith("cuda")
    trained = header.metadata.get("context_length")
    n_ctx = min(trained, CONTEXT_CAP) if isinstance(trained, int) and trained > 0 else CONTEXT_CAP
    options: dict[str, Any] = {"n_gpu_layers": -1 if on_cuda else 0, "n_ctx": n_ctx}
    if on_cuda:
        # Keep every layer on this worker's own GPU rather than splitting across those visible.
        options.update(
            main_gpu=int(spec.device.partition(":")[2] or 0), split_mode=llama_cpp.LLAMA_SPLIT_MODE_NONE
        )
    meter = memory.meter_for(spec.device, torch_allocator=False)
    size = path.stat().st_size
    try:
        before = memory.snapshot(spec.device, meter)
        started = time.perf_counter()
        with guard.watching(spec.guard, spec.device, meter):
            llama = llama_cpp.Llama(
                model_path=str(path), embedding=spec.kind == "embedding", verbose=False, **options
            )
        seconds = time.perf_counter() - started
        after = memory.snapshot(spec.device, meter)
    except ServingError:
        raise  # the load guard stopped it, and said why
    except Exception as exc:
        raise serving_error(exc, subject=f"loading {path.name}") from exc
    tasks = frozenset({EMBED}) if spec.kind == "embedding" else frozenset({GENERATE})
    return LlamaLoaded(
        llama=llama,
        file=path.name,
        facts={"architecture": header.metadata.get("architecture"), "n_gpu_layers": options["n_gpu_layers"]},
        device=spec.device,
        tasks=tasks,
        measured_bytes=memory.load_cost(before, after, floor=size),
        load_seconds=seconds,
        weights_bytes=size,
        meter=meter,
    )


def _model_file(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(path.glob("*.gguf")) if path.is_dir() else []
    if len(files) != 1:
        raise CorruptFile(f"{path.name} is not a .gguf file, nor a folder holding exactly one")
    return files[0]


def _checked_header(path: Path) -> Any:
    header = read(path)
    failed = [check for check in header.checks if check.status == "fail"]
    if failed:
        raise CorruptFile(f"{path.name} fails its header check {failed[0].check}: {failed[0].detail}"[:2000])
    return header


def _pooled(embedding: list[Any]) -> list[float]:
    """One vector per text: llama.cpp gives one per token where the model names no pooling."""
    if embedding and isinstance(embedding[0], list):
        return [sum(column) / len(embedding) for column in zip(*embedding, strict=True)]
    return embedding
