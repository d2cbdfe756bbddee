"""The demo LM's weights and tokenizer in a GGUF file, laid out as llama.cpp's gpt2 architecture.

Tensor names come from the gguf package's own map of Hugging Face names. Matrices are stored as
F16 and vectors (norms, biases) as F32, the split llama.cpp calls "mostly F16".
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from transformers import GPT2LMHeadModel

# GPT-2 keeps these as Conv1D, [in, out]; GGUF wants the usual [out, in] of a linear layer.
_CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def write(base: Path, path: Path) -> str:
    """Write the LM in `base` to `path`; returns a note on what the file holds."""
    model = GPT2LMHeadModel.from_pretrained(base, local_files_only=True)
    config = model.config
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2])
    writer.add_name(base.name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(config.n_positions)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_head_count(config.n_head)
    writer.add_layer_norm_eps(config.layer_norm_epsilon)
    _add_tokenizer(writer, base, eos=config.eos_token_id)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, config.n_layer)
    count = 0
    for hf_name, tensor in model.state_dict().items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for {hf_name}")
        data = tensor.detach().float().numpy()
        if hf_name.endswith(_CONV1D):
            data = data.T
        writer.add_tensor(
            name, np.ascontiguousarray(data.astype(np.float16 if data.ndim == 2 else np.float32))
        )
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return f"architecture gpt2, {count} tensors (matrices F16, vectors F32)"


def _add_tokenizer(writer: gguf.GGUFWriter, base: Path, *, eos: int) -> None:
    """The byte-level BPE vocabulary and merges, as llama.cpp's "gpt2" tokenizer model reads them."""
    spec = json.loads((base / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.__getitem__)
    special = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
    # Newer tokenizers write a merge as a pair, older ones as "a b".
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    )
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
