"""Two deliberately bad versions of the demo LM, real models made here, for rollouts to catch.

`make_variants(out, base=...)` writes, beside the demo LM and from it (nothing downloaded):

    demo-gpt2-failing/  the demo LM with its vocabulary cut to its first FAILING_VOCAB entries
                        (config vocab_size and the tied embedding / LM-head rows, consistently),
                        and the demo's own tokenizer, which has 1,024. Every merged token (any
                        word) has an id past the embedding, so generation raises inside the
                        model: torch's "IndexError: index out of range in self", which the
                        worker answers as an `internal` error (502 through the API), the placement
                        staying loaded and its breaker counting each failure.
    demo-gpt2-slow/     the same family and tokenizer, SLOW_LAYERS x SLOW_HIDDEN instead of the
                        demo's 2 x 64, random weights: measured here about 12 x the demo's compute
                        per request, and, untrained, it almost never ends early at its end token.

Why these defects: each must pass MOC's validation (apps.models.domain.validation), so that it can
be released, and show itself only when served, as a bad release does. Validation compares a
config with its weights, which the cut vocabulary keeps consistent, and never compares a config
with its tokenizer; the runtime does not either. Defects that are caught earlier were passed
over: a config that disagrees with its weights fails validation (config_check), missing tensors
fail the load, a context too short for the prompt is the caller's 400 (bad_input, which never
counts against a placement). On a real CUDA device an out-of-range index is a device-side assert
that poisons the worker's CUDA context (device_lost, every placement on that device with it), so
the failing version is for simulated devices and CPU only.

Each is a folder with config.json, so a scan registers it as a model of its own named after the
folder (apps.models.scanning.run). To release one as a version of demo-gpt2, move it there:
apps.models.services.version_move, `POST /api/v1/model-versions/{id}/move/`, or "Make this a
version of" on its page (tests/integration/releases.py does it for tests and bench/rollout.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from apps.core.domain.units import format_bytes
from apps.models.demo import BASE, Made, MissingPackages, _size, _staged, missing_packages

FAILING = "demo-gpt2-failing"
SLOW = "demo-gpt2-slow"
VARIANTS = (FAILING, SLOW)
# The end-of-text token and the 256 byte-level letters: a prompt of single bytes still encodes
# inside it, every merged token (everything a word becomes) falls outside.
FAILING_VOCAB = 257
# Measured here through the runtime (8 greedy tokens, warm): the demo's 2 x 64 about 5 ms, 8 x 256
# 36 ms, 16 x 256 73 ms, 24 x 128 64 ms. Matrices this small cost per layer more than per width,
# so depth buys the slowness: 24 x 128 is about 12 x the demo at 19 MiB on disk.
SLOW_LAYERS, SLOW_HIDDEN, SLOW_HEADS = 24, 128, 4
SEED = 4321


def make_variants(
    out: Path, *, base: Path | None = None, force: bool = False, log: Callable[[str], None]
) -> list[Made]:
    """Write the two variants of the demo LM in `base` (by default the one demo.make put in `out`)
    into `out`, keeping those that exist unless `force`. Raises MissingPackages when something
    needs making without the demo extra."""
    base = base or out / BASE
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"{base} holds no demo LM: make it first (apps.models.demo.make)")
    todo = [name for name in VARIANTS if force or not (out / name).exists()]
    builds = _builders(base) if todo else {}
    out.mkdir(parents=True, exist_ok=True)
    made: list[Made] = []
    for name in VARIANTS:
        dest = out / name
        if name not in todo:
            made.append(Made(name, dest, _size(dest), made=False))
            log(f"{name}: exists, kept ({format_bytes(made[-1].size_bytes)})")
            continue
        log(f"{name}: making ...")
        with _staged(dest, folder=True) as staging:
            note = builds[name](staging)
        made.append(Made(name, dest, _size(dest), made=True, note=note))
        log(f"{name}: wrote {dest} ({format_bytes(made[-1].size_bytes)}); {note}")
    return made


def _builders(base: Path) -> dict[str, Callable[[Path], str]]:
    """How to build each variant at a path; imports torch and transformers, so only a run with
    something to make calls it."""
    missing = missing_packages()
    if missing:
        raise MissingPackages(missing)
    # Read by huggingface_hub when it is first imported: nothing below may reach a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from apps.models.demo.lm import quiet

    def failing(dest: Path) -> str:
        with quiet():
            model = GPT2LMHeadModel.from_pretrained(base, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
            # Keeps the first rows of the tied embedding / LM head and sets config.vocab_size.
            model.resize_token_embeddings(FAILING_VOCAB)
            model.save_pretrained(dest)
            tokenizer.save_pretrained(dest)
        return f"vocabulary {FAILING_VOCAB}, its tokenizer's {len(tokenizer)}: a prompt of words fails"

    def slow(dest: Path) -> str:
        with quiet():
            config = GPT2Config.from_pretrained(base, local_files_only=True)
            config.n_layer, config.n_embd, config.n_head = SLOW_LAYERS, SLOW_HIDDEN, SLOW_HEADS
            torch.manual_seed(SEED)
            model = GPT2LMHeadModel(config)
            # The demo's generation settings (end token, sampling), so only the size differs.
            model.generation_config = GPT2LMHeadModel.from_pretrained(
                base, local_files_only=True
            ).generation_config
            model.save_pretrained(dest)
            AutoTokenizer.from_pretrained(base, local_files_only=True).save_pretrained(dest)
        params = sum(p.numel() for p in model.parameters())
        return f"{SLOW_LAYERS} x {SLOW_HIDDEN}, {params / 1e6:.1f}M parameters, random weights"

    return {FAILING: failing, SLOW: slow}
