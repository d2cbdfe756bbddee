"""Small valid and broken or hostile model files, written into a test's tmp folder.

Safetensors files are built with struct and json (no numpy, no torch); pickles are written by
pickle.dumps or by hand as opcodes, so writing a hostile one never runs it. GGUF and ONNX
writers live in corpus_gguf_onnx.py.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

# dtype -> bits per element, enough for the files written here.
_BITS = {
    "F64": 64,
    "F32": 32,
    "F16": 16,
    "BF16": 16,
    "I64": 64,
    "I32": 32,
    "I8": 8,
    "U8": 8,
    "BOOL": 8,
    "F4": 4,
}

SMALL_TENSORS: dict[str, tuple[str, list[int]]] = {
    "model.embed_tokens.weight": ("F16", [8, 4]),
    "model.norm.weight": ("BF16", [4]),
    "lm_head.weight": ("F32", [8, 4]),
}
SMALL_PARAMS = 8 * 4 + 4 + 8 * 4
SMALL_BYTES = 8 * 4 * 2 + 4 * 2 + 8 * 4 * 4


# Safetensors


def safetensors_bytes(
    tensors: dict[str, tuple[str, list[int]]], *, metadata: dict[str, str] | None = None
) -> bytes:
    """A valid file: tensors laid out in order from byte 0, header padded to 8 bytes."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        elements = 1
        for dim in shape:
            elements *= dim
        size = elements * _BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return raw_safetensors(json.dumps(header), data_bytes=offset)


def raw_safetensors(header: str | bytes, *, data_bytes: int, claimed: int | None = None) -> bytes:
    """Any header text (valid or not) behind a length prefix (the true one unless `claimed`)."""
    raw = header.encode() if isinstance(header, str) else header
    raw += b" " * ((8 - len(raw) % 8) % 8)
    length = len(raw) if claimed is None else claimed
    return struct.pack("<Q", length) + raw + bytes(range(256)) * (data_bytes // 256) + bytes(data_bytes % 256)


def write(folder: Path, name: str, content: bytes | str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def write_safetensors(
    folder: Path,
    name: str = "model.safetensors",
    tensors: dict[str, tuple[str, list[int]]] | None = None,
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    return write(folder, name, safetensors_bytes(tensors or SMALL_TENSORS, metadata=metadata))


def _entries(*entries: tuple[str, str, list[int], list[int]]) -> str:
    """Header JSON for (name, dtype, shape, data_offsets) entries, in the given order."""
    return json.dumps({name: {"dtype": d, "shape": s, "data_offsets": o} for name, d, s, o in entries})


def truncated(folder: Path) -> Path:
    return write(folder, "truncated.safetensors", safetensors_bytes(SMALL_TENSORS)[:5])


def header_longer_than_file(folder: Path) -> Path:
    return write(folder, "long_header.safetensors", raw_safetensors("{}", data_bytes=0, claimed=4096))


def header_claims_99_mb(folder: Path) -> Path:
    """A 16-byte file whose length prefix claims a 99 MB header (under the 100 MB limit)."""
    return write(folder, "claims_99mb.safetensors", raw_safetensors("{}", data_bytes=0, claimed=99_000_000))


def header_over_limit(folder: Path) -> Path:
    return write(folder, "over_limit.safetensors", raw_safetensors("{}", data_bytes=0, claimed=100_000_001))


def length_prefix_2_to_64(folder: Path) -> Path:
    return write(folder, "u64_max.safetensors", raw_safetensors("{}", data_bytes=0, claimed=2**64 - 1))


def sparse_99_mb_not_json(folder: Path) -> Path:
    """A real 99 MB header (sparse on disk) that is zeros, not JSON: refused from its first bytes."""
    path = folder / "sparse.safetensors"
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", 99_000_000))
        handle.truncate(8 + 99_000_000)
    return path


def header_not_json(folder: Path) -> Path:
    return write(folder, "not_json.safetensors", raw_safetensors('{"a": {"dtype": "F32",', data_bytes=0))


def header_not_utf8(folder: Path) -> Path:
    return write(folder, "not_utf8.safetensors", raw_safetensors(b'{"\xff\xfe": 1}', data_bytes=0))


def header_not_object(folder: Path) -> Path:
    return write(folder, "list.safetensors", raw_safetensors("[1, 2, 3]", data_bytes=0))


def header_nan(folder: Path) -> Path:
    return write(folder, "nan.safetensors", raw_safetensors('{"__metadata__": {"a": NaN}}', data_bytes=0))


def header_deeply_nested(folder: Path) -> Path:
    return write(folder, "nested.safetensors", raw_safetensors('{"a":' + "[" * 200_000, data_bytes=0))


def duplicate_tensor_names(folder: Path) -> Path:
    entry = '{"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}'
    return write(
        folder, "dup_names.safetensors", raw_safetensors(f'{{"w": {entry}, "w": {entry}}}', data_bytes=8)
    )


def duplicate_keys_in_entry(folder: Path) -> Path:
    entry = '{"dtype": "F32", "dtype": "I8", "shape": [2], "data_offsets": [0, 8]}'
    return write(folder, "dup_keys.safetensors", raw_safetensors(f'{{"w": {entry}}}', data_bytes=8))


def negative_offsets(folder: Path) -> Path:
    header = _entries(("w", "F32", [2], [-8, 0]))
    return write(folder, "negative.safetensors", raw_safetensors(header, data_bytes=8))


def overlapping_offsets(folder: Path) -> Path:
    header = _entries(("a", "F32", [2], [0, 8]), ("b", "F32", [2], [4, 12]))
    return write(folder, "overlap.safetensors", raw_safetensors(header, data_bytes=12))


def gapped_offsets(folder: Path) -> Path:
    header = _entries(("a", "F32", [2], [0, 8]), ("b", "F32", [2], [16, 24]))
    return write(folder, "gap.safetensors", raw_safetensors(header, data_bytes=24))


def offsets_past_end(folder: Path) -> Path:
    header = _entries(("a", "F32", [2], [0, 8]), ("b", "F32", [1024], [8, 4104]))
    return write(folder, "past_end.safetensors", raw_safetensors(header, data_bytes=8))


def trailing_bytes(folder: Path) -> Path:
    header = _entries(("a", "F32", [2], [0, 8]))
    return write(folder, "trailing.safetensors", raw_safetensors(header, data_bytes=64))


def reversed_offsets(folder: Path) -> Path:
    header = _entries(("a", "F32", [2], [8, 0]))
    return write(folder, "reversed.safetensors", raw_safetensors(header, data_bytes=8))


def size_not_dtype_times_shape(folder: Path) -> Path:
    header = _entries(("a", "F32", [3], [0, 8]))
    return write(folder, "size.safetensors", raw_safetensors(header, data_bytes=8))


def unknown_dtype(folder: Path) -> Path:
    header = _entries(("a", "Q4_K", [2], [0, 8]))
    return write(folder, "dtype.safetensors", raw_safetensors(header, data_bytes=8))


def huge_shape_product(folder: Path) -> Path:
    """Dims whose product wraps a 64-bit integer to exactly 8 bytes' worth: caught, not wrapped."""
    header = _entries(("a", "F32", [2**62, 2**62, 2], [0, 8]))
    return write(folder, "huge_shape.safetensors", raw_safetensors(header, data_bytes=8))


def odd_subbyte_tensor(folder: Path) -> Path:
    header = _entries(("a", "F4", [3], [0, 2]))
    return write(folder, "subbyte.safetensors", raw_safetensors(header, data_bytes=2))


def boolean_shape(folder: Path) -> Path:
    header = '{"a": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}'
    return write(folder, "bool_shape.safetensors", raw_safetensors(header, data_bytes=4))


def metadata_not_strings(folder: Path) -> Path:
    header = json.dumps(
        {"__metadata__": {"step": 3}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    )
    return write(folder, "metadata.safetensors", raw_safetensors(header, data_bytes=4))


# name -> writer; tests pair each with the check it must fail and words its detail must hold.
HOSTILE_SAFETENSORS: dict[str, Callable[[Path], Path]] = {
    f.__name__: f
    for f in (
        truncated,
        header_longer_than_file,
        header_claims_99_mb,
        header_over_limit,
        length_prefix_2_to_64,
        header_not_json,
        header_not_utf8,
        header_not_object,
        header_nan,
        header_deeply_nested,
        duplicate_tensor_names,
        duplicate_keys_in_entry,
        negative_offsets,
        overlapping_offsets,
        gapped_offsets,
        offsets_past_end,
        trailing_bytes,
        reversed_offsets,
        size_not_dtype_times_shape,
        unknown_dtype,
        huge_shape_product,
        odd_subbyte_tensor,
        boolean_shape,
        metadata_not_strings,
    )
}


def write_index(folder: Path, weight_map: dict[str, str], name: str = "model.safetensors.index.json") -> Path:
    return write(
        folder, name, json.dumps({"metadata": {"total_size": SMALL_BYTES}, "weight_map": weight_map})
    )


def write_sharded(folder: Path, shards: int = 2) -> list[Path]:
    """A sharded set: `shards` files with one tensor each, and the index that maps them."""
    weight_map: dict[str, str] = {}
    paths = []
    for number in range(1, shards + 1):
        shard = f"model-{number:05d}-of-{shards:05d}.safetensors"
        tensor = f"layers.{number}.weight"
        paths.append(write_safetensors(folder, shard, {tensor: ("F16", [4, 4])}))
        weight_map[tensor] = shard
    return [*paths, write_index(folder, weight_map)]


# Hugging Face folders

LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "vocab_size": 1000,
    "torch_dtype": "bfloat16",
}
# A template that would run a shell command if anything rendered it with Jinja.
HOSTILE_TEMPLATE = "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}"


def write_json(folder: Path, name: str, data: Any) -> Path:
    return write(folder, name, json.dumps(data))


def llama_tensors(config: dict[str, Any], *, tied: bool = False) -> dict[str, tuple[str, list[int]]]:
    """The tensors a Llama checkpoint of `config`'s sizes holds, under transformers' names."""
    hidden, vocab, ffn = config["hidden_size"], config["vocab_size"], config["intermediate_size"]
    head_dim = hidden // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim
    tensors: dict[str, tuple[str, list[int]]] = {"model.embed_tokens.weight": ("F16", [vocab, hidden])}
    for layer in range(config["num_hidden_layers"]):
        at = f"model.layers.{layer}"
        tensors |= {
            f"{at}.input_layernorm.weight": ("F16", [hidden]),
            f"{at}.self_attn.q_proj.weight": ("F16", [hidden, hidden]),
            f"{at}.self_attn.k_proj.weight": ("F16", [kv, hidden]),
            f"{at}.self_attn.v_proj.weight": ("F16", [kv, hidden]),
            f"{at}.self_attn.o_proj.weight": ("F16", [hidden, hidden]),
            f"{at}.post_attention_layernorm.weight": ("F16", [hidden]),
            f"{at}.mlp.gate_proj.weight": ("F16", [ffn, hidden]),
            f"{at}.mlp.up_proj.weight": ("F16", [ffn, hidden]),
            f"{at}.mlp.down_proj.weight": ("F16", [hidden, ffn]),
        }
    tensors["model.norm.weight"] = ("F16", [hidden])
    if not tied:
        tensors["lm_head.weight"] = ("F16", [vocab, hidden])
    return tensors


LLAMA_PARAMS = sum(math.prod(shape) for _, shape in llama_tensors(LLAMA_CONFIG).values())


def write_llama_shards(folder: Path, config: dict[str, Any] | None = None) -> list[Path]:
    """`config`'s Llama weights (LLAMA_CONFIG's by default) in two shards, and their index."""
    tensors = llama_tensors(config or LLAMA_CONFIG)
    names = list(tensors)
    halves = (names[: len(names) // 2], names[len(names) // 2 :])
    weight_map: dict[str, str] = {}
    paths = []
    for number, half in enumerate(halves, start=1):
        shard = f"model-{number:05d}-of-00002.safetensors"
        paths.append(write_safetensors(folder, shard, {name: tensors[name] for name in half}))
        weight_map |= dict.fromkeys(half, shard)
    return [*paths, write_index(folder, weight_map)]


def write_hf_folder(
    folder: Path,
    *,
    config: dict[str, Any] | None = None,
    tokenizer: bool = True,
    chat_template: str | None = "{% for m in messages %}{{ m.content }}{% endfor %}",
) -> list[str]:
    """A small causal-LM folder (config, tokenizer, generation config, sharded weights); its file names.

    The weights are LLAMA_CONFIG's whatever `config` says, so another config can be tried on them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder, "config.json", LLAMA_CONFIG if config is None else config)
    write_json(folder, "generation_config.json", {"max_length": 2048, "eos_token_id": 2, "do_sample": True})
    if tokenizer:
        write_json(folder, "tokenizer.json", {"version": "1.0", "model": {"type": "BPE", "vocab": {}}})
        tokenizer_config: dict[str, Any] = {"model_max_length": 2048}
        if chat_template is not None:
            tokenizer_config["chat_template"] = chat_template
        write_json(folder, "tokenizer_config.json", tokenizer_config)
    write_llama_shards(folder)
    return sorted(p.name for p in folder.iterdir())


def write_adapter_folder(folder: Path, adapter: dict[str, Any] | None = None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA",
        "base_model_name_or_path": "meta-llama/Llama-3.1-8B",
        "r": 16,
        "lora_alpha": 32,
        "target_modules": ["q_proj", "v_proj"],
        "task_type": "CAUSAL_LM",
    }
    write_json(folder, "adapter_config.json", config if adapter is None else adapter)
    write_safetensors(folder, "adapter_model.safetensors", {"lora_A.weight": ("F32", [16, 64])})
    return sorted(p.name for p in folder.iterdir())


def oversized_json(folder: Path, name: str = "config.json") -> Path:
    return write(folder, name, '{"pad": "' + "x" * (10 * 1024 * 1024) + '"}')


# Pickles


class _RunsShell:
    """Unpickling this runs a shell command that creates `marker`; pickling it runs nothing."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


def clean_pickle() -> bytes:
    """A state dict of plain values, shaped like what torch.save writes (without tensors)."""
    return pickle.dumps(OrderedDict([("layer.weight", [0.5, 1.5]), ("layer.bias", [0.0])]), protocol=2)


def torch_like_pickle() -> bytes:
    """Opcodes naming the globals a real torch.save pickle names (never loaded, only scanned)."""
    return (
        b"\x80\x02"
        + b"ccollections\nOrderedDict\n)R"  # OrderedDict()
        + b"X\x01\x00\x00\x00w"  # key "w"
        + b"ctorch._utils\n_rebuild_tensor_v2\n"
        + b"(ctorch\nFloatStorage\nX\x01\x00\x00\x000K\x00t\x85R"  # its call on ((FloatStorage, "0", 0),)
        + b"s."  # SETITEM, STOP
    )


def shell_pickle(marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps(OrderedDict([("weight", _RunsShell(marker))]), protocol=protocol)


def eval_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Evals(marker), protocol=4)


def legacy_torch_file(folder: Path, name: str, payload: bytes) -> Path:
    """The pre-1.6 torch.save layout: magic number, protocol and sys-info pickles, then the payload."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    version = pickle.dumps(1001, protocol=2)
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    keys = pickle.dumps([], protocol=2)
    return write(folder, name, magic + version + sys_info + payload + keys + bytes(64))


def torch_zip_file(folder: Path, name: str, payload: bytes, storage_bytes: int = 64) -> Path:
    """The torch.save zip layout: archive/data.pkl, archive/data/0 (a storage), archive/version."""
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/data/0", bytes(storage_bytes))
        archive.writestr("archive/version", "3\n")
    return path


def zip_bomb_pickle(folder: Path, name: str = "bomb.bin", megabytes: int = 8) -> Path:
    """A zip whose data.pkl inflates to megabytes of one-byte opcodes from a few KB."""
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    chunk = b"N0" * (512 * 1024)  # NONE, POP: valid opcodes that build nothing
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("archive/data.pkl", "w", force_zip64=True) as member,
    ):
        member.write(b"\x80\x02")
        for _ in range(megabytes):
            member.write(chunk)
        member.write(b"N.")
    return path


# Symlinks


def escaping_symlink(root: Path, outside: Path, name: str = "escape.safetensors") -> Path:
    """A valid file outside the root, and a link to it inside the root."""
    target = write_safetensors(outside, "secret.safetensors")
    link = root / name
    root.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link
