"""Small real models made on this machine, with nothing downloaded, so MOC has real files to work on.

`make()` writes four artefacts into a folder (normally the first model root):

    demo-gpt2/        a tiny GPT-2-style causal LM: safetensors weights, a byte-level BPE tokenizer
                      trained on corpus.txt with a chat template, a generation config; trained for
                      a fixed number of steps (a few seconds), so the same machine makes the same
                      weights every time
    demo-gpt2-lora/   a LoRA adapter for it (peft) trained on status.txt, naming the base by its
                      absolute path
    demo-gpt2-onnx/   its ONNX export (model.onnx)
    demo-gpt2-f16.gguf  the same weights in a GGUF file (architecture gpt2; its own name, so
                      discovery does not register it under the folder model's name)

torch, transformers and the rest come from the optional "demo" extra. Only the modules that use
them import them, and make() imports those modules only when something needs making: they take
seconds to import, and a run that finds every artefact in place (each start of scripts/run.sh)
should not pay for them. MOC itself runs without the extra.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from apps.core.domain.units import format_bytes

BASE = "demo-gpt2"
LORA = "demo-gpt2-lora"
ONNX = "demo-gpt2-onnx"
GGUF = "demo-gpt2-f16.gguf"
# In the order they are made: the base first, as the others are made from it.
ARTEFACTS = (BASE, LORA, ONNX, GGUF)
CORPUS = Path(__file__).with_name("corpus.txt")
# What the adapter learns: short status reports in the corpus's own words, so its tokens are ones
# the base's tokenizer knows, and text the base has never seen, so the adapter's answers differ.
STATUS = Path(__file__).with_name("status.txt")
# Training steps of the base LM: enough for it to recite the corpus in whole sentences (measured
# here: corpus loss 6.9 -> 1.2, about 3 s on one core); fewer give a faster, less readable model.
LM_STEPS = 200

REQUIRED = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "peft",
    "onnx",
    "onnxscript",
    "gguf",
    "numpy",
)
PIP_HINT = (
    "pip install -e '.[demo]'  (or: pip install torch==2.13.0 transformers tokenizers safetensors"
    " peft onnx onnxscript gguf numpy)"
)
# Staged artefacts are renamed into place only when complete; a scan should skip dot-names.
_PARTIAL = ".partial"


@dataclass(frozen=True, slots=True)
class Made:
    """One artefact and what became of it in this run."""

    name: str
    path: Path
    size_bytes: int
    made: bool  # False: it existed and was kept
    note: str = ""


class MissingPackages(Exception):
    """Something needs making and the demo extra's packages (named in args[0]) are not installed."""


def missing_packages() -> list[str]:
    """The demo extra's packages that cannot be imported here."""
    gone = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except ImportError:
            gone.append(name)
    return gone


def make(out: Path, *, steps: int = LM_STEPS, force: bool, log: Callable[[str], None]) -> list[Made]:
    """Write the four artefacts into `out`, keeping those that exist unless `force`; the base LM
    trains for `steps` steps. Raises MissingPackages when something needs making without the extra.

    The adapter, the ONNX export and the GGUF file are derived from the base LM, so they are
    remade whenever the base is: an adapter trained on other weights would be stale.
    """
    base = out / BASE
    remake_all = force or not base.exists()
    todo = {name for name in ARTEFACTS if remake_all or not (out / name).exists()}
    builds, quiet = _builders(base, steps=steps) if todo else ({}, nullcontext())
    out.mkdir(parents=True, exist_ok=True)
    made: list[Made] = []
    with quiet:
        for name in ARTEFACTS:
            dest = out / name
            if name not in todo:
                made.append(Made(name, dest, _size(dest), made=False))
                log(f"{name}: exists, kept ({format_bytes(made[-1].size_bytes)}); --force remakes it")
                continue
            log(f"{name}: making ...")
            with _staged(dest, folder=name != GGUF) as staging:
                note = builds[name](staging)
            made.append(Made(name, dest, _size(dest), made=True, note=note))
            log(f"{name}: wrote {dest} ({format_bytes(made[-1].size_bytes)}){'; ' + note if note else ''}")
    return made


def _builders(
    base: Path, *, steps: int
) -> tuple[dict[str, Callable[[Path], str]], AbstractContextManager[None]]:
    """How to build each artefact at a given path, and the context that keeps the libraries quiet
    while they do; imports torch and the rest, so only a run with something to make calls it."""
    missing = missing_packages()
    if missing:
        raise MissingPackages(missing)
    # Read by huggingface_hub when it is first imported: nothing below may reach a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from apps.models.demo import gguf_file, lm, lora, onnx_export

    builds: dict[str, Callable[[Path], str]] = {
        BASE: lambda dest: lm.make(dest, steps=steps).summary(),
        LORA: lambda dest: lora.make(base.resolve(), dest).summary(),
        ONNX: lambda dest: onnx_export.write(base, dest / "model.onnx"),
        GGUF: lambda dest: gguf_file.write(base, dest),
    }
    return builds, lm.quiet()


@contextmanager
def _staged(dest: Path, *, folder: bool) -> Iterator[Path]:
    """A sibling path to build into, renamed over `dest` only once the build finished."""
    staging = dest.with_name(f".{dest.name}{_PARTIAL}")
    _remove(staging)
    if folder:
        staging.mkdir()
    try:
        yield staging
    except BaseException:
        _remove(staging)
        raise
    # safetensors writes 0600; workers running as another user must still read the model root.
    for path in [staging, *staging.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    _remove(dest)
    staging.replace(dest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
