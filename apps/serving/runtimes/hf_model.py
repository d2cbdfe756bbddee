"""A transformers model held by the worker: generation with our own decode loop, and embeddings.

A base model and the adapters loaded over it are each one of these; an adapter shares its
base's tokenizer and parameter tensors, and the base knows its adapters so that unloading it
first can say why its memory did not come back.
"""

from __future__ import annotations

import inspect
import secrets
import threading
import weakref
from typing import Any

import torch

from apps.serving.domain.errors import BadInput
from apps.serving.domain.wire import Token
from apps.serving.runtimes import decode
from apps.serving.runtimes.base import (
    Loaded,
    OnDelta,
    check_deadline,
    choice_result,
    completion_result,
)

EMBED_BATCH = 32
# Prompt positions scored at once for echo: bounds the float32 copy of their logits.
_SCORED_ROWS = 64
# Beyond this a tokenizer's model_max_length is transformers' "no limit" placeholder.
_NO_LIMIT = 10**7


class TransformersLoaded(Loaded):
    runtime = "transformers"

    def __init__(
        self,
        *,
        model: Any,
        tokenizer: Any,
        kind: str,
        tokenizer_lock: threading.Lock | None = None,
        **figures: Any,
    ) -> None:
        super().__init__(**figures)
        self.kind = kind
        self._model = model
        self._tokenizer = tokenizer
        # Fast tokenizers are Rust objects that refuse to be used from two threads at once; an
        # adapter shares its base's tokenizer, and so its lock.
        self._tokenizer_lock = tokenizer_lock or threading.Lock()
        self._torch_device = torch.device(self.device)
        config = model.config
        self.context_length = _context_length(config, tokenizer)
        self._eos = frozenset(_ids(getattr(model, "generation_config", None), config, tokenizer))
        self._bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config.bos_token_id
        # Ids the model has rows for and the tokenizer can write.
        self._vocabulary = min(len(tokenizer), getattr(config, "vocab_size", None) or len(tokenizer))
        self._pad = next((i for i in (tokenizer.pad_token_id, *sorted(self._eos)) if i is not None), 0)
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._logits_args = {"logits_to_keep": 1} if _accepts(inner, "logits_to_keep") else {}
        # The transformer without its LM head: embeddings need its last hidden state only.
        self._backbone = inner.base_model
        self._backbone_args = {"use_cache": False} if _accepts(self._backbone, "use_cache") else {}
        self._adapters: weakref.WeakSet[TransformersLoaded] = weakref.WeakSet()
        self._facts = {
            "kind": kind,
            "architecture": (getattr(config, "architectures", None) or [type(inner).__name__])[0],
            "dtype": str(inner.dtype).removeprefix("torch."),
            "params": sum(p.numel() for p in inner.parameters()),
            "context_length": self.context_length,
            "vocab_size": len(tokenizer),
        }

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
        """Each prompt's `n` choices (seeds seed, seed + 1, ...), one after another; with `echo`
        the prompt's own tokens and their log-probabilities from one pass over it, which the first
        choice then continues from."""
        model, _ = self._live()
        encoded = [self._prompt_ids(prompt, f"prompts[{i}]") for i, prompt in enumerate(prompts)]
        seed = secrets.randbits(63) if seed is None else seed
        choices: list[dict[str, Any]] = []
        generated = 0
        with torch.inference_mode():
            for p, ids in enumerate(encoded):
                # A budget of 0 (echo only) reads the prompt and decodes nothing: it needs no room.
                room = self._room(ids, least=0 if max_tokens == 0 else 1)
                budget = room if max_tokens is None else min(max_tokens, room)
                first, prompt_tokens = None, None
                if echo:
                    check_deadline(deadline, "before the prompt was read")
                    first, prompt_tokens = self._prompt_pass(model, ids, logprobs or 0)
                for j in range(n):
                    index = p * n + j
                    if prompt_tokens is not None and on_delta is not None:  # the echo comes first
                        echoed = prompt_tokens if logprobs is not None else None
                        on_delta(index, "".join(t.text for t in prompt_tokens), echoed, None)
                    listen = None if on_delta is None else _listener(on_delta, index, logprobs is not None)
                    generator = torch.Generator(device=self._torch_device).manual_seed((seed + j) % 2**63)
                    made = decode.choice(
                        self._step(model),
                        prompt_ids=ids,
                        budget=budget,
                        eos=self._eos,
                        stops=stops,
                        temperature=float(temperature),
                        top_p=float(top_p),
                        generator=generator,
                        device=self._torch_device,
                        deadline=deadline,
                        detokenize=self._decode,
                        top=logprobs,
                        first=first if j == 0 else None,
                        on_text=listen,
                    )
                    generated += len(made.ids)
                    finish = "stop" if made.finish_reason == "eos" else made.finish_reason
                    tokens = made.tokens if logprobs is not None else None
                    choices.append(
                        choice_result(index, made.text, finish, tokens=tokens, prompt=prompt_tokens)
                    )
        return completion_result(choices, prompt_tokens=sum(map(len, encoded)), completion_tokens=generated)

    def _prompt_pass(
        self, model: Any, ids: list[int], top: int
    ) -> tuple[tuple[torch.Tensor, Any], list[Token]]:
        """One forward pass over the prompt: its last logits and cache (to generate from), and
        each prompt token with its log-probability given those before it (the first has none),
        which is how evaluation harnesses score a text's likelihood."""
        out = model(input_ids=torch.tensor([ids], device=self._torch_device), use_cache=True)
        logits = out.logits[0]
        text = decode.Text(self._decode, stops=[])
        for token in ids:
            text.add(token)
        text.finish()
        _, pieces = text.release(final=True)
        tokens = [Token(text=pieces[0][1], id=ids[0])]
        for i in range(1, len(ids)):
            if (i - 1) % _SCORED_ROWS == 0:  # a few rows at a time: a whole prompt's is vocabulary x length
                logprobs = torch.log_softmax(logits[i - 1 : i - 1 + _SCORED_ROWS].float(), dim=-1)
            logprob, top_ids = decode.scores(logprobs[(i - 1) % _SCORED_ROWS], ids[i], top)
            top_pairs = [(self._decode([t]), lp) for t, lp in top_ids]
            tokens.append(Token(text=pieces[i][1], id=ids[i], logprob=logprob, top=top_pairs))
        return (out.logits[0, -1], out.past_key_values), tokens

    def _chat_template(self) -> tuple[str | None, str, str]:
        template = getattr(self._tokenizer, "chat_template", None)
        if isinstance(template, dict):  # named templates: the default one chats
            template = template.get("default")
        tokenizer = self._tokenizer
        return (
            template if isinstance(template, str) else None,
            tokenizer.bos_token or "",
            tokenizer.eos_token or "",
        )

    def _chat_prompt(self, text: str) -> list[int]:
        # A template writes the start-of-text token itself where the model wants one.
        with self._tokenizer_lock:
            return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

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
        model, _ = self._live()
        ids = self._prompt_ids(prompt, "prompt")
        room = self._room(ids)
        seed = secrets.randbits(63) if seed is None else seed
        generator = torch.Generator(device=self._torch_device).manual_seed(seed)
        with torch.inference_mode():
            decoded = decode.run(
                self._step(model),
                prompt_ids=ids,
                budget=min(max_new_tokens, room),
                eos=self._eos,
                stops=stops,
                temperature=float(temperature),
                top_p=float(top_p),
                generator=generator,
                device=self._torch_device,
                deadline=deadline,
                detokenize=self._decode,
            )
        return {
            "text": decoded.text,
            "tokens_in": len(ids),
            "tokens_out": len(decoded.ids),
            "finish_reason": decoded.finish_reason,
            "seed": seed,
        }

    def _embed(self, *, texts: list[str | list[int]], deadline: float | None) -> dict[str, Any]:
        """Mean of the last hidden state over each text's tokens, L2-normalised."""
        _, backbone = self._live()
        encoded = [
            self._known(t, f"texts[{i}]") if isinstance(t, list) else self._encode(t)
            for i, t in enumerate(texts)
        ]
        for i, ids in enumerate(encoded):
            if not ids:
                raise BadInput(f"texts[{i}] encodes to no tokens")
            if self.context_length and len(ids) > self.context_length:
                raise BadInput(
                    f"texts[{i}] is {len(ids)} tokens; the model's context holds {self.context_length}"
                )
        vectors: list[list[float]] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), EMBED_BATCH):
                check_deadline(deadline, f"after {start} of {len(encoded)} texts")
                batch = encoded[start : start + EMBED_BATCH]
                width = max(len(ids) for ids in batch)
                # Padding on the right keeps each real token at its own position in a causal model.
                inputs = torch.tensor([ids + [self._pad] * (width - len(ids)) for ids in batch])
                mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch])
                inputs, mask = inputs.to(self._torch_device), mask.to(self._torch_device)
                hidden = backbone(input_ids=inputs, attention_mask=mask, **self._backbone_args)[0]
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
                vectors.extend(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().tolist())
        return {"embeddings": vectors, "dim": len(vectors[0]), "tokens_in": sum(map(len, encoded))}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._facts}

    def _live(self) -> tuple[Any, Any]:
        """The model and its backbone, held for one request even if an unload starts meanwhile."""
        model, backbone = self._model, self._backbone
        if model is None or backbone is None:
            self._open()
        return model, backbone

    def _step(self, model: Any) -> decode.Step:
        def step(inputs: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
            out = model(input_ids=inputs, past_key_values=cache, use_cache=True, **self._logits_args)
            return out.logits[0, -1], out.past_key_values

        return step

    def _prompt_ids(self, prompt: str | list[int], name: str) -> list[int]:
        """A prompt's token ids (a text encoded, token ids checked); an empty prompt begins from the
        start-of-text token."""
        ids = self._known(prompt, name) if isinstance(prompt, list) else self._encode(prompt)
        if not ids:
            if self._bos is None:
                raise BadInput(f"{name} is empty and this tokenizer has no start-of-text token to begin from")
            ids = [self._bos]
        return ids

    def _known(self, ids: list[int], name: str) -> list[int]:
        vocabulary = self._vocabulary
        outside = next((i for i in ids if i >= vocabulary), None)
        if outside is not None:
            raise BadInput(
                f"{name} holds token id {outside}; this model's vocabulary has ids 0 to {vocabulary - 1}"
            )
        return ids

    def _room(self, ids: list[int], *, least: int = 1) -> int:
        """How many tokens the context leaves after `ids`; BadInput when fewer than `least`."""
        if not self.context_length:
            return 2**31
        room = self.context_length - len(ids)
        if room < least:
            leaves = ", which leaves no room to generate" if least else ""
            raise BadInput(
                f"the prompt is {len(ids)} tokens; the model's context holds {self.context_length}{leaves}"
            )
        return room

    def _encode(self, text: str) -> list[int]:
        with self._tokenizer_lock:
            return list(self._tokenizer(text)["input_ids"])

    def _decode(self, ids: list[int]) -> str:
        with self._tokenizer_lock:
            return self._tokenizer.decode(ids, skip_special_tokens=True)

    def _drop(self) -> tuple[list[weakref.ref[Any]], str]:
        refs = [weakref.ref(self._model)]
        self._model = self._backbone = None
        holding = [a for a in list(self._adapters) if not a._closed]
        if holding:
            return refs, f"{len(holding)} adapter(s) loaded on it still hold its weights"
        return refs, ""


def _listener(on_delta: OnDelta, index: int, with_tokens: bool) -> decode.OnText:
    def told(text: str, tokens: list[Token], finish_reason: str | None) -> None:
        on_delta(index, text, tokens if with_tokens else None, finish_reason)

    return told


def _context_length(config: Any, tokenizer: Any) -> int | None:
    for value in (getattr(config, "max_position_embeddings", None), tokenizer.model_max_length):
        if isinstance(value, int) and 0 < value < _NO_LIMIT:
            return value
    return None


def _ids(*sources: Any) -> set[int]:
    """The end-of-text token ids a generation config, a model config and a tokenizer name."""
    found: set[int] = set()
    for source in sources:
        value = getattr(source, "eos_token_id", None)
        found.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    return found


def _accepts(module: Any, name: str) -> bool:
    return name in inspect.signature(module.forward).parameters
