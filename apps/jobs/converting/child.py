"""The conversion itself, in a process of its own: `python -m apps.jobs.converting.child IN OUT`.

IN is a version's folder (pytorch_model.bin, or its shards and their index) or a single pickle
file; OUT a folder to write (the runner's staging folder, renamed into place once this succeeds).
Started by the runner inside the sandbox (apps.jobs.converting.sandbox), it asks to die with the
worker and seals itself before it opens anything, reads each pickle with
torch.load(weights_only=True) only - a pickle that would import anything beyond tensors and plain
containers is refused, never run - and writes:

- the tensors as safetensors (model.safetensors, or model-0000k-of-0000n.safetensors and their
  index for sharded input), contiguous, with tensors that share memory handled: an exact alias (a
  tied output head, which is the same tensor as the input embedding) is written once under the
  embedding's name when the config ties them (transformers ties it again on load), and any other
  shared or overlapping tensor is written as a copy of its own;
- the folder's config, tokenizer and template files (JSON, text, sentencepiece, Jinja), and never
  any other pickle (training_args.bin, optimizer.pt), Python file or symbolic link (whose target may
  lie anywhere). The shards an index names must be plain file names in the folder.

Its last line of output is one JSON object: {"ok": true, "files", "tensors", "bytes", "sha256",
"aliases", "copied", "skipped"} or {"ok": false, "refused": bool, "error", "error_class"} (the
class the job fails with: out_of_memory for a MemoryError); the exit status is 0, 2 (refused: the
pickle is not weights only) or 1 (anything else). No Django here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from apps.jobs.converting.sandbox import die_with_parent, parent_pid, seal
from apps.jobs.domain.failures import classify
from apps.jobs.domain.kinds import ErrorClass

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Pickles beside the weights that are not weights (the Trainer's), and never read.
NOT_WEIGHTS = frozenset(
    {"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "trainer_state.json"}
)
SIDE_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken", ".md")
INDEX = "pytorch_model.bin.index.json"
# Names of output heads that are tied to the input embedding in the architectures that tie them.
_HEAD_WORDS = ("lm_head", "embed_out", "output.weight")
# Nested state dicts some training scripts save ({"state_dict": {...}}, {"model": {...}}).
_NESTED = ("state_dict", "model", "module")
# What torch's CPU allocator says when it cannot have the memory (a RuntimeError, not a MemoryError).
_CPU_OUT_OF_MEMORY = "can't allocate memory"
OK, FAILED, REFUSED = 0, 1, 2


class Refused(Exception):
    """The pickle is not weights only (torch's weights-only unpickler would not read it)."""


class Unusable(Exception):
    """The input holds no tensors this can write (no pickle found, a pickle of something else)."""


def pickle_inputs(source: Path) -> list[Path]:
    """The pickle files holding `source`'s weights, in shard order."""
    if source.is_file():
        if source.suffix.lower() not in PICKLE_SUFFIXES:
            raise Unusable(f"{source.name} is not a pickle checkpoint ({', '.join(PICKLE_SUFFIXES)})")
        return [source]
    index = source / INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [source / _plain(str(name), index.name) for name in shards]
    if (source / "pytorch_model.bin").is_file():
        return [source / "pytorch_model.bin"]
    found = sorted(
        p
        for p in source.iterdir()
        if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES and p.name not in NOT_WEIGHTS
    )
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise Unusable(f"{source.name}: expected one pickle checkpoint or an index of shards, found {names}")
    return found


def _plain(name: str, where: str) -> str:
    """`name` when it is a plain file name (no folder, not . or ..); ValueError naming it otherwise."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{where} names a shard that is not a plain file name in the folder: {name!r}")
    return name


def output_name(index: int, count: int) -> str:
    return "model.safetensors" if count == 1 else f"model-{index:05d}-of-{count:05d}.safetensors"


def sha256_of(paths: list[Path]) -> str:
    """One digest over the input files in order (a single file's is that file's sha256)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def convert(source: Path, out: Path) -> dict[str, Any]:
    """Write `source`'s weights into `out` as safetensors, with its side files (see the module)."""
    inputs = pickle_inputs(source)
    folder = source if source.is_dir() else source.parent
    tie = _ties_embeddings(folder)
    out.mkdir(parents=True, exist_ok=True)
    files, weight_map, aliases, tensors, written = [], {}, {}, 0, 0
    for i, path in enumerate(inputs, start=1):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises UnpicklingError (or RuntimeError) on a refused global
            if "weights only" in str(exc).lower() or "unsupported global" in str(exc).lower():
                raise Refused(f"{path.name}: {_refusal(str(exc))}") from exc
            raise
        state = _state_dict(loaded, path.name)
        state, dropped = _unshared(state, tie=tie)
        aliases.update(dropped)
        name = output_name(i, len(inputs))
        save_file(state, str(out / name), metadata={"format": "pt", "converted_from": path.name})
        files.append(name)
        weight_map.update(dict.fromkeys(state, name))
        tensors += len(state)
        written += (out / name).stat().st_size
        del loaded, state
    if len(inputs) > 1:
        index = {"metadata": {"total_size": written}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        files.append("model.safetensors.index.json")
    copied, skipped = _copy_side_files(folder, out, inputs) if source.is_dir() else ([], [])
    return {
        "ok": True,
        "files": files,
        "tensors": tensors,
        "bytes": written,
        "sha256": sha256_of(inputs),
        "inputs": [p.name for p in inputs],
        "aliases": aliases,
        "copied": copied,
        "skipped": skipped,
    }


def _state_dict(loaded: Any, name: str) -> dict[str, Any]:
    """The name -> tensor mapping in what a pickle held (unwrapping a nested state dict)."""
    for key in _NESTED:
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict) and len(loaded) <= 4:
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict):
        raise Unusable(f"{name} holds a {type(loaded).__name__}, not a state dict of named tensors")
    state = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise Unusable(f"{name} holds no tensors")
    return state


def _unshared(state: dict[str, Any], *, tie: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """`state` with no two tensors sharing memory (safetensors refuses that), contiguous; the exact
    aliases dropped as name -> the name kept (only where the config ties embeddings)."""
    by_storage: dict[tuple[str, int], list[str]] = defaultdict(list)
    for name, tensor in state.items():
        if tensor.numel():
            by_storage[(str(tensor.device), tensor.untyped_storage().data_ptr())].append(name)
    out = dict(state)
    dropped: dict[str, str] = {}
    for names in by_storage.values():
        if len(names) < 2:
            continue
        # Heads last: the embedding's name is the one kept (what transformers' save_pretrained keeps).
        names = sorted(names, key=lambda n: (any(w in n for w in _HEAD_WORDS), n))
        keep = names[0]
        for other in names[1:]:
            if tie and _same(state[keep], state[other]) and any(w in other for w in _HEAD_WORDS):
                del out[other]
                dropped[other] = keep
            else:
                out[other] = state[other].clone()
    return {n: t.contiguous() for n, t in out.items()}, dropped


def _same(a: Any, b: Any) -> bool:
    return bool(
        a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
    )


def _ties_embeddings(folder: Path) -> bool:
    """Whether the model's config ties its output head to its input embedding (transformers'
    default, True, when the config does not say); False without a config to say so."""
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return bool(data.get("tie_word_embeddings", True)) if isinstance(data, dict) else False


def _copy_side_files(folder: Path, out: Path, inputs: list[Path]) -> tuple[list[str], list[str]]:
    """Copy the config, tokenizer and template files beside the weights; (copied, skipped) names."""
    copied, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.is_symlink():  # its target may be anything the worker can read
            skipped.append(path.name)
            continue
        if not path.is_file() or path in inputs or path.name == INDEX:
            continue
        if path.suffix.lower() in SIDE_SUFFIXES and path.name not in NOT_WEIGHTS:
            shutil.copyfile(path, out / path.name)
            copied.append(path.name)
        else:
            skipped.append(path.name)
    return copied, skipped


def _refusal(text: str) -> str:
    """What torch's refusal says about the pickle (the global it would have imported), without its
    advice to turn the weights-only loader off for the file (which MOC never does)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if "global" in line.lower() and "weights_only" not in line]
    why = named[0] if named else (lines[0] if lines else "refused")
    return f"the weights-only loader refused it ({why})"[:1000]


def failure(exc: BaseException) -> dict[str, Any]:
    """What the child says when `exc` ended the conversion (not a refusal)."""
    error_class = classify(exc)
    if _CPU_OUT_OF_MEMORY in str(exc).lower():
        error_class = ErrorClass.OUT_OF_MEMORY
    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return {"ok": False, "refused": False, "error": error[:2000], "error_class": error_class.value}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(json.dumps({"ok": False, "refused": False, "error": "usage: child IN OUT"}))
        return FAILED
    if not die_with_parent(parent_pid()):
        return FAILED  # the worker died while this started: nobody waits for the result
    seal()  # before anything is opened: the libraries above are imported by now
    try:
        result = convert(Path(argv[0]), Path(argv[1]))
    except Refused as exc:
        print(json.dumps({"ok": False, "refused": True, "error": str(exc)}))
        return REFUSED
    except Exception as exc:  # MemoryError included: it is an Exception
        print(json.dumps(failure(exc)))
        return FAILED
    print(json.dumps(result))
    return OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
