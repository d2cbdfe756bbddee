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
from apps.serving.runtimes import decode
from apps.serving.runtimes.base import Loaded, check_deadline

EMBED_BATCH = 32
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
        ids = self._encode(prompt)
        if not ids:
            if self._bos is None:
                raise BadInput("prompt is empty and this tokenizer has no start-of-text token to begin from")
            ids = [self._bos]
        room = self.context_length - len(ids) if self.context_length else max_new_tokens
        if room < 1:
            raise BadInput(
                f"prompt is {len(ids)} tokens; the model's context holds {self.context_length},"
                " which leaves no room to generate"
            )
        seed = secrets.randbits(63) if seed is None else seed
        generator = torch.Generator(device=self._torch_device).manual_seed(seed)

        def step(inputs: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
            out = model(input_ids=inputs, past_key_values=cache, use_cache=True, **self._logits_args)
            return out.logits[0, -1], out.past_key_values

        with torch.inference_mode():
            decoded = decode.run(
                step,
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

    def _embed(self, *, texts: list[str], deadline: float | None) -> dict[str, Any]:
        """Mean of the last hidden state over each text's tokens, L2-normalised."""
        _, backbone = self._live()
        encoded = [self._encode(text) for text in texts]
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
