"""The demo LoRA adapter: low-rank updates to the base LM's attention and MLP, trained briefly.

It learns status.txt, short reports in which everything "is green", written in words the base's
tokenizer knows but in sentences the base has never seen. So loading the adapter visibly changes
what the model answers: at temperature 0 the base continues "The registry" with a sentence of
the corpus ("holds models. ..."), the adapter with a report ("is green. Every version is healthy").
peft records the base it was trained on by the path it was loaded from, which is why the caller
passes an absolute one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer, GPT2LMHeadModel

from apps.models.demo import STATUS
from apps.models.demo.lm import SEED, Training, train

# Measured here: the loss over status.txt falls from 6.0 to 1.6 and greedy answers recite its
# reports, in about 1 s on one core.
STEPS = 60
LR = 1e-2


def make(base: Path, folder: Path) -> Training:
    """Train a rank-8 adapter on the base in `base` and save it (config + safetensors) into `folder`."""
    torch.manual_seed(SEED + 1)
    model = GPT2LMHeadModel.from_pretrained(base, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    ids = torch.tensor(tokenizer(STATUS.read_text(encoding="utf-8"))["input_ids"])
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
    training = train(adapted, ids, steps=STEPS, lr=LR, seed=SEED + 1)
    adapted.save_pretrained(folder)
    return training
