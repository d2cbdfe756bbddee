"""The demo LoRA adapter: low-rank updates to the base LM's attention and MLP, trained briefly.

It learns the corpus written in capitals, a style the base has never seen, so loading the
adapter visibly changes what the model predicts. peft records the base it was trained on by the
path it was loaded from, which is why the caller passes an absolute one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer, GPT2LMHeadModel

from apps.models.demo import CORPUS
from apps.models.demo.lm import SEED, Training, train


def make(base: Path, folder: Path, *, seconds: float) -> Training:
    """Train a rank-8 adapter on the base in `base` and save it (config + safetensors) into `folder`."""
    torch.manual_seed(SEED + 1)
    model = GPT2LMHeadModel.from_pretrained(base, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    ids = torch.tensor(tokenizer(CORPUS.read_text(encoding="utf-8").upper())["input_ids"])
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["c_attn", "c_proj", "c_fc"],
        # GPT-2 keeps these layers as Conv1D, whose weights are stored transposed.
        fan_in_fan_out=True,
        task_type="CAUSAL_LM",
    )
    adapted = get_peft_model(model, config)
    training = train(adapted, ids, seconds=seconds, lr=5e-3, seed=SEED + 1)
    adapted.save_pretrained(folder)
    return training
