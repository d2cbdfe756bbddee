"""What several serving tests share: a completion's params as the direct channel carries them, and
a runtime whose library gives text and nothing more (as llama.cpp's does)."""

from __future__ import annotations

from typing import Any

from apps.serving.runtimes import Loaded

# wire.COMPLETE_PARAMS for a greedy completion of 8 tokens after "The registry".
COMPLETE: dict[str, Any] = {
    "prompts": ["The registry"],
    "max_tokens": 8,
    "temperature": 0.0,
    "top_p": 1.0,
    "n": 1,
    "stop": [],
    "seed": None,
    "echo": False,
    "logprobs": None,
}


class TextOnly(Loaded):
    """Each choice's text names its prompt and seed, so a test sees which generation made it."""

    runtime = "text-only"

    def __init__(self) -> None:
        super().__init__(
            device="cpu",
            tasks=frozenset({"generate"}),
            measured_bytes=0,
            load_seconds=0.0,
            weights_bytes=0,
            meter="rss",
        )

    def _generate(self, *, prompt: str, seed: int | None, **_: Any) -> dict[str, Any]:
        text = f"{prompt}|{seed}"
        return {"text": text, "tokens_in": len(prompt), "tokens_out": len(text), "finish_reason": "eos"}

    def _drop(self) -> tuple[list[Any], str]:
        return [], ""
