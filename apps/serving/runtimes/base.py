"""What every runtime shares: the load spec, the loaded model's contract, unloading, request checks.

Nothing here imports torch or any other runtime library, so a device worker without the demo
extra still starts; the runtime modules that need one are imported by `load` when a version does.
"""

from __future__ import annotations

import gc
import math
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.core.domain.units import format_bytes
from apps.models.domain.chat_template import DEFAULT_TEMPLATE, TemplateRefused, render
from apps.serving.domain.errors import (
    BadInput,
    CorruptFile,
    DeviceLost,
    ErrorClass,
    NotAllowed,
    OutOfMemory,
    RuntimeMissing,
    ServingError,
    Transient,
    classify,
)
from apps.serving.domain.tasks import EMBED, GENERATE, TENSORS
from apps.serving.domain.wire import Token, token_dict
from apps.serving.runtimes import memory
from apps.serving.runtimes.guard import Guard

# Far beyond any context in characters; bounds the tokenizer's work on a hostile request.
MAX_PROMPT_CHARS = 2_000_000
MAX_STOPS = 16
MAX_STOP_CHARS = 200
MAX_TEXTS = 256
MAX_TEXT_CHARS = 100_000
MAX_CHOICES = 128  # choices in one completion: prompts x n
MAX_MESSAGES = 1_000
# The alternatives a token may carry: OpenAI's completions allow 5, its chat 20.
MAX_LOGPROBS_COMPLETE, MAX_LOGPROBS_CHAT = 5, 20
# A chat without max_tokens generates as much as the context leaves: a runtime caps this by it.
AS_CONTEXT_ALLOWS = 2**31
LOGPROBS_MISSING = "logprobs are not available for this runtime"
ECHO_MISSING = "echo is not available for this runtime"
# What a completion's listener hears as a choice's text becomes final:
# (choice index, text, its tokens or None without logprobs, finish_reason on the last call).
OnDelta = Callable[[int, str, list[Token] | None, str | None], None]
# A runtime freed what it should when the device's figure fell by at least this share of the load's.
FREED_SHARE = 0.9


class DeadlineExceeded(ServingError, TimeoutError):
    """The request's deadline passed while it ran; what was computed so far is dropped."""

    error_class = ErrorClass.TIMEOUT


@dataclass(frozen=True, slots=True)
class LoadSpec:
    path: str  # absolute path of the version's folder or single file
    format: str  # a ModelFormat value
    kind: str  # causal-lm, embedding, adapter, onnx-graph, ...
    device: str  # torch device string: "cpu" or "cuda:N", the worker's own device
    allow_pickle: bool = False  # an admin allowed pickle weights (still read weights-only)
    base: Loaded | None = None  # for an adapter: its base, already loaded by this worker
    guard: Guard | None = None  # stops the load past its reservation or once its placement ended


@dataclass(frozen=True, slots=True)
class Unloaded:
    freed_bytes: int  # the measured drop; on cpu best effort and often 0 (allocators keep pages)
    verified: bool  # the objects are gone and, on cuda, the memory came back
    detail: str


class Loaded:
    """One model held in this worker's memory, answering the requests in `tasks`.

    Several threads of the worker's pool may call the request methods at once; each runtime keeps
    per-request state (caches, random generators) out of shared objects. `close()` may run while
    a request is still in flight (the caller drains first, but may give up): that request keeps
    its references and finishes, and the unload then reports itself unverified.
    """

    runtime: str = ""
    # Whether its `_generate` also takes a prompt of token ids (else the base `_complete` refuses one).
    token_prompts: bool = False

    def __init__(
        self,
        *,
        device: str,
        tasks: frozenset[str],
        measured_bytes: int,
        load_seconds: float,
        weights_bytes: int,
        meter: str,
    ) -> None:
        self.device = device
        self.tasks = tasks
        self.measured_bytes = measured_bytes
        self.load_seconds = load_seconds
        # The bytes of the tensors (or file) this load added: the floor under measured_bytes.
        self.weights_bytes = weights_bytes
        self._meter = meter
        self._closed = False
        self._close_lock = threading.Lock()

    def generate(
        self,
        *,
        prompt: str,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop: list[str],
        seed: int | None,
        deadline: float | None,
    ) -> dict[str, Any]:
        """Check the request the same way for every runtime, then generate with the runtime's own
        `_generate`; a model that does not generate says so."""
        if GENERATE not in self.tasks:
            raise self._not_served(GENERATE)
        stops = check_generate(
            prompt=prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )
        return self._generate(
            prompt=prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stops=stops,
            seed=seed,
            deadline=deadline,
        )

    def _generate(
        self,
        *,
        prompt: str,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stops: list[str],
        seed: int | None,
        deadline: float | None,
    ) -> dict[str, Any]:
        """The runtime's generation, for a request generate() has checked."""
        raise NotImplementedError

    def embed(
        self, *, texts: list[str | list[int]], deadline: float | None, dimensions: int | None = None
    ) -> dict[str, Any]:
        """Check the inputs (texts or token ids) the same way for every runtime, embed with the
        runtime's `_embed`, and with `dimensions` keep that many leading values, L2-normalised
        again (what OpenAI's text-embedding-3 models do)."""
        if EMBED not in self.tasks:
            raise self._not_served(EMBED)
        if dimensions is not None and (not _is_int(dimensions) or dimensions < 1):
            raise BadInput("dimensions must be a whole number of at least 1, or null")
        result = self._embed(texts=check_texts(texts), deadline=deadline)
        if dimensions is None or dimensions == result["dim"]:
            return result
        if dimensions > result["dim"]:
            raise BadInput(f"dimensions is {dimensions}; this model's embeddings have {result['dim']}")
        vectors = [unit(vector[:dimensions]) for vector in result["embeddings"]]
        return {**result, "embeddings": vectors, "dim": dimensions}

    def _embed(self, *, texts: list[str | list[int]], deadline: float | None) -> dict[str, Any]:
        """The runtime's embedding, for inputs embed() has checked."""
        raise NotImplementedError

    def complete(
        self,
        *,
        prompts: list[str | list[int]],
        max_tokens: int,
        temperature: float,
        top_p: float,
        n: int,
        stop: list[str],
        seed: int | None,
        echo: bool,
        logprobs: int | None,
        deadline: float | None,
        on_delta: OnDelta | None = None,
    ) -> dict[str, Any]:
        """A text completion (apps.serving.domain.wire's complete op and result), checked the same
        way for every runtime; `on_delta` hears each choice's text as it becomes final."""
        if GENERATE not in self.tasks:
            raise self._not_served(GENERATE)
        stops = check_complete(
            prompts=prompts,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            n=n,
            stop=stop,
            seed=seed,
            echo=echo,
            logprobs=logprobs,
        )
        return self._complete(
            prompts=prompts,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            n=n,
            stops=stops,
            seed=seed,
            echo=echo,
            logprobs=logprobs,
            deadline=deadline,
            on_delta=on_delta,
        )

    def chat(
        self,
        *,
        messages: list[dict[str, Any]],
        max_tokens: int | None,
        temperature: float,
        top_p: float,
        n: int,
        stop: list[str],
        seed: int | None,
        logprobs: int | None,
        deadline: float | None,
        on_delta: OnDelta | None = None,
    ) -> dict[str, Any]:
        """A chat completion: the messages rendered by the model's chat template (in the sandbox of
        apps.models.domain.chat_template; a refused template is BadInput saying why), completed."""
        if GENERATE not in self.tasks:
            raise self._not_served(GENERATE)
        stops = check_chat(
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            n=n,
            stop=stop,
            seed=seed,
            logprobs=logprobs,
        )
        source, bos, eos = self._chat_template()
        try:
            prompt = render(source or DEFAULT_TEMPLATE, messages, bos_token=bos, eos_token=eos)
        except TemplateRefused as exc:
            raise BadInput(f"messages: {exc}"[:2000]) from exc
        return self._complete(
            prompts=[self._chat_prompt(prompt)],
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            n=n,
            stops=stops,
            seed=seed,
            echo=False,
            logprobs=logprobs,
            deadline=deadline,
            on_delta=on_delta,
        )

    def _chat_template(self) -> tuple[str | None, str, str]:
        """The model's chat template (None: it has none) and its start and end-of-text tokens' text."""
        return None, "", ""

    def _chat_prompt(self, text: str) -> str | list[int]:
        """A rendered chat prompt as `_complete` takes it (a runtime may tokenize it its own way)."""
        return text

    def _complete(
        self,
        *,
        prompts: list[str | list[int]],
        max_tokens: int | None,
        temperature: float,
        top_p: float,
        n: int,
        stops: list[str],
        seed: int | None,
        echo: bool,
        logprobs: int | None,
        deadline: float | None,
        on_delta: OnDelta | None,
    ) -> dict[str, Any]:
        """Completion through the runtime's `_generate`, one choice at a time, for runtimes whose
        library gives text but no token detail: no logprobs, no echo, one delta per choice."""
        if logprobs is not None or echo:
            raise BadInput(LOGPROBS_MISSING if logprobs is not None else ECHO_MISSING)
        seed = secrets.randbits(62) if seed is None else seed
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for p, prompt in enumerate(prompts):
            if not isinstance(prompt, str) and not self.token_prompts:
                raise BadInput(f"prompts[{p}]: token-id prompts are not available for this runtime")
            for j in range(n):
                made = self._generate(
                    prompt=prompt,
                    max_new_tokens=AS_CONTEXT_ALLOWS if max_tokens is None else max_tokens,
                    temperature=temperature,
                    top_p=top_p,
                    stops=stops,
                    seed=(seed + j) % 2**63,
                    deadline=deadline,
                )
                finish = "stop" if made["finish_reason"] in ("stop", "eos") else "length"
                index = p * n + j
                if on_delta is not None:
                    on_delta(index, made["text"], None, finish)
                choices.append(choice_result(index, made["text"], finish))
                completion_tokens += int(made["tokens_out"])
            prompt_tokens += int(made["tokens_in"])
        return completion_result(choices, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def tensors(self, *, inputs: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        raise self._not_served(TENSORS)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "device": self.device,
            "tasks": sorted(self.tasks),
            "measured_bytes": self.measured_bytes,
            "weights_bytes": self.weights_bytes,
            "load_seconds": round(self.load_seconds, 3),
        }

    def close(self) -> Unloaded:
        """Drop this worker's references, collect, and check that the model really went away."""
        with self._close_lock:
            if self._closed:
                return Unloaded(0, True, "already unloaded")
            self._closed = True
            before = memory.snapshot(self.device, self._meter)
            refs, holders = self._drop()
            gc.collect()
            memory.release_cached(self.device)
            after = memory.snapshot(self.device, self._meter)
        freed = memory.freed(before, after)
        alive = sum(ref() is not None for ref in refs)
        problems = [holders] if holders else []
        if alive:
            problems.append(f"{alive} of its objects are still referenced (a request still running?)")
        if self._meter != memory.RSS and freed is not None and freed < FREED_SHARE * self.measured_bytes:
            problems.append(
                f"the device got back {format_bytes(freed)} of the {format_bytes(self.measured_bytes)}"
                " the load took"
            )
        freed_bytes = freed or 0
        if problems:
            return Unloaded(freed_bytes, False, "; ".join(problems))
        how = memory.METER_WORDS[self._meter] if freed is not None else "no reading on this worker"
        return Unloaded(freed_bytes, True, f"objects gone; {format_bytes(freed_bytes)} freed by {how}")

    def _drop(self) -> tuple[list[weakref.ref[Any]], str]:
        """Forget the runtime's objects: weak references to them, and why they may outlive the unload."""
        raise NotImplementedError

    def _open(self) -> None:
        if self._closed:
            raise Transient("the model was unloaded from this worker while the request waited for it")

    def _not_served(self, task: str) -> BadInput:
        served = ", ".join(sorted(self.tasks)) or "no"
        return BadInput(f"this {self.runtime} model answers {served} requests, not {task}")


def choice_result(
    index: int,
    text: str,
    finish_reason: str,
    *,
    tokens: list[Token] | None = None,
    prompt: list[Token] | None = None,
) -> dict[str, Any]:
    """One choice of a completion's result (apps.serving.domain.wire)."""
    return {
        "index": index,
        "text": text,
        "finish_reason": finish_reason,
        "tokens": None if tokens is None else [token_dict(t) for t in tokens],
        "prompt": None if prompt is None else [token_dict(t) for t in prompt],
    }


def completion_result(
    choices: list[dict[str, Any]], *, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    return {
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


def check_deadline(deadline: float | None, doing: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded(f"the request's deadline passed {doing}")


def check_generate(
    *, prompt: object, max_new_tokens: object, temperature: object, top_p: object, stop: object, seed: object
) -> list[str]:
    """Refuse malformed generation parameters with the parameter's name; returns the stop strings kept."""
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS:
        raise BadInput(f"prompt must be a string of at most {MAX_PROMPT_CHARS:,} characters")
    if not _is_int(max_new_tokens) or max_new_tokens < 1:
        raise BadInput("max_new_tokens must be a whole number of at least 1")
    return _check_sampling(temperature=temperature, top_p=top_p, stop=stop, seed=seed, hottest=100)


def check_complete(
    *,
    prompts: object,
    max_tokens: object,
    temperature: object,
    top_p: object,
    n: object,
    stop: object,
    seed: object,
    echo: object,
    logprobs: object,
) -> list[str]:
    """Refuse a malformed completion (wire.COMPLETE_PARAMS) naming the parameter; the stops kept."""
    if not isinstance(prompts, list) or not prompts or len(prompts) > MAX_CHOICES:
        raise BadInput(f"prompts must be a list of 1 to {MAX_CHOICES} prompts")
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if len(prompt) > MAX_PROMPT_CHARS:
                raise BadInput(f"prompts[{i}] must be at most {MAX_PROMPT_CHARS:,} characters")
        elif not _is_token_ids(prompt, empty=True):
            raise BadInput(f"prompts[{i}] must be a string or a list of token ids (whole numbers from 0)")
    if not isinstance(echo, bool):
        raise BadInput("echo must be true or false")
    # 0 with echo: the prompt scored, nothing generated (how harnesses read a text's likelihood).
    if not _is_int(max_tokens) or max_tokens < (0 if echo else 1):
        raise BadInput("max_tokens must be a whole number of at least 1 (0 only with echo)")
    _check_choices(n, len(prompts))
    _check_logprobs(logprobs, MAX_LOGPROBS_COMPLETE)
    return _check_sampling(temperature=temperature, top_p=top_p, stop=stop, seed=seed)


def check_chat(
    *,
    messages: object,
    max_tokens: object,
    temperature: object,
    top_p: object,
    n: object,
    stop: object,
    seed: object,
    logprobs: object,
) -> list[str]:
    """Refuse a malformed chat (wire.CHAT_PARAMS) naming the parameter; the stops kept."""
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise BadInput(f"messages must be a list of 1 to {MAX_MESSAGES:,} messages")
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadInput(f"messages[{i}] must be an object with a role and a content")
        if not isinstance(message.get("content"), str):
            raise BadInput(f"messages[{i}].content must be a string")
        total += len(message["content"])
    if total > MAX_PROMPT_CHARS:
        raise BadInput(f"messages hold more than {MAX_PROMPT_CHARS:,} characters")
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise BadInput("max_tokens must be a whole number of at least 1, or null")
    _check_choices(n, 1)
    _check_logprobs(logprobs, MAX_LOGPROBS_CHAT)
    return _check_sampling(temperature=temperature, top_p=top_p, stop=stop, seed=seed)


def _check_choices(n: object, prompts: int) -> None:
    if not _is_int(n) or n < 1 or n * prompts > MAX_CHOICES:
        raise BadInput(f"n must be a whole number of at least 1, with at most {MAX_CHOICES} choices in all")


def _check_logprobs(logprobs: object, most: int) -> None:
    if logprobs is not None and (not _is_int(logprobs) or not 0 <= logprobs <= most):
        raise BadInput(f"logprobs must be a whole number from 0 to {most}, or null")


def _check_sampling(
    *, temperature: object, top_p: object, stop: object, seed: object, hottest: float = 2
) -> list[str]:
    if not _is_number(temperature) or not 0 <= temperature <= hottest:
        raise BadInput(f"temperature must be a number from 0 (greedy) to {hottest}")
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise BadInput("top_p must be a number above 0 and at most 1")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise BadInput("seed must be a whole number from 0 to 2**63 - 1, or null")
    if not isinstance(stop, list) or len(stop) > MAX_STOPS:
        raise BadInput(f"stop must be a list of at most {MAX_STOPS} strings")
    if any(not isinstance(s, str) or len(s) > MAX_STOP_CHARS for s in stop):
        raise BadInput(f"each stop must be a string of at most {MAX_STOP_CHARS} characters")
    return [s for s in stop if s]


def first_stop(text: str, stops: list[str]) -> int | None:
    """Where the earliest stop string begins in `text`, or None."""
    found = [at for at in (text.find(s) for s in stops) if at >= 0]
    return min(found) if found else None


def check_texts(texts: object) -> list[str | list[int]]:
    if not isinstance(texts, list) or not texts or len(texts) > MAX_TEXTS:
        raise BadInput(f"texts must be a list of 1 to {MAX_TEXTS} strings or lists of token ids")
    for i, text in enumerate(texts):
        if isinstance(text, list):
            if not _is_token_ids(text, empty=False):
                raise BadInput(f"texts[{i}] must be a non-empty list of token ids (whole numbers from 0)")
        elif not isinstance(text, str) or not text or len(text) > MAX_TEXT_CHARS:
            raise BadInput(f"texts[{i}] must be a non-empty string of at most {MAX_TEXT_CHARS:,} characters")
    return texts


def _is_token_ids(value: object, *, empty: bool) -> bool:
    return (
        isinstance(value, list)
        and (empty or bool(value))
        and len(value) <= MAX_TEXT_CHARS
        and all(_is_int(i) and i >= 0 for i in value)
    )


def unit(vector: list[float]) -> list[float]:
    """`vector` scaled to length 1 (a zero vector stays zero)."""
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# What a library's message says when a file is damaged, in the words torch, transformers,
# safetensors, protobuf and llama.cpp use. Not "safetensors" itself: a message that merely names
# a model.safetensors file says nothing about its state (classify() knows safetensors' own errors).
_CORRUPT_WORDS = (
    "unable to mmap",
    "headertoolarge",
    "invalid_protobuf",
    "protobuf parsing failed",
    "pytorchstreamreader",
    "central directory",
    "invalid load key",
    "unexpected eof",
    "truncated",
    "not a valid json",
    "expecting value",
    "failed to load model",
    "incomplete metadata",
    "does not appear to have",
    "no file named",
)


# What torch says when its weights-only unpickler meets a global it will not import.
_PICKLE_WORDS = ("unpickling", "weights only load", "weightsunpickler")
_SUBCLASSES: dict[ErrorClass, type[ServingError]] = {
    ErrorClass.OUT_OF_MEMORY: OutOfMemory,
    ErrorClass.CORRUPT_FILE: CorruptFile,
    ErrorClass.RUNTIME_MISSING: RuntimeMissing,
    ErrorClass.NOT_ALLOWED: NotAllowed,
    ErrorClass.DEVICE_LOST: DeviceLost,
    ErrorClass.TRANSIENT: Transient,
    ErrorClass.TIMEOUT: DeadlineExceeded,
}
_SAYS = {
    ErrorClass.OUT_OF_MEMORY: "ran out of memory",
    ErrorClass.CORRUPT_FILE: "met a damaged file, or one that is not what it claims",
    ErrorClass.RUNTIME_MISSING: "needs a library this worker lacks",
    ErrorClass.NOT_ALLOWED: "was refused by the weights-only loader",
    ErrorClass.DEVICE_LOST: "lost the device",
}


def serving_error(exc: BaseException, *, subject: str) -> ServingError:
    """`exc` as the ServingError subclass MOC acts on; `subject` says what was being done ("loading x")."""
    if isinstance(exc, ServingError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if isinstance(exc, ImportError):
        error_class = ErrorClass.RUNTIME_MISSING
    elif any(word in lowered for word in _PICKLE_WORDS):
        error_class = ErrorClass.NOT_ALLOWED
    else:
        error_class = classify(exc)
        if error_class == ErrorClass.INTERNAL and any(word in lowered for word in _CORRUPT_WORDS):
            error_class = ErrorClass.CORRUPT_FILE
    message = f"{subject} {_SAYS.get(error_class, 'failed')}: {text}"[:2000]
    subclass = _SUBCLASSES.get(error_class)
    return subclass(message) if subclass else ServingError(message, error_class)
