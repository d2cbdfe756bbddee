"""Which requests a model version answers once loaded, by its kind and format (pure Python).

Both sides read it: the web side to refuse a request a version cannot answer before any worker
is asked, the device worker's runtimes to build the model that answers it."""

from __future__ import annotations

GENERATE, EMBED, TENSORS = "generate", "embed", "tensors"


def tasks_for(kind: str, format: str) -> frozenset[str]:
    """The requests a version of this kind and format answers once loaded (empty: MOC cannot serve it)."""
    if format == "onnx" or kind == "onnx-graph":
        return frozenset({TENSORS})
    if format == "gguf":
        return {"causal-lm": frozenset({GENERATE}), "embedding": frozenset({EMBED})}.get(kind, frozenset())
    if kind == "adapter":  # a folder of adapter_config.json and weights, whatever its weights' format
        return frozenset({GENERATE, EMBED})
    if format != "hf":  # a bare weights file names no architecture to build
        return frozenset()
    return {"causal-lm": frozenset({GENERATE, EMBED}), "embedding": frozenset({EMBED})}.get(kind, frozenset())


def task_problem(version: str, kind: str, format: str, task: str) -> str | None:
    """Why a version (named `version`) cannot answer `task`, or None: the message a 400 on the
    request's task field carries."""
    accepted = tasks_for(kind, format)
    if task in accepted:
        return None
    return f"{version} ({kind or 'unknown kind'}) answers: {', '.join(sorted(accepted)) or 'none'}."
