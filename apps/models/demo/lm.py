"""The demo causal LM: a byte-level BPE tokenizer and a tiny GPT-2, both trained on corpus.txt.

A few hundred steps of training (a few seconds) take the model from guessing uniformly over the
vocabulary to reciting the corpus in whole sentences, so that its greedy answers read as words.
Training runs a fixed number of steps from fixed seeds, on one thread, so the same machine makes
the same weights every time. The training loop is shared with the LoRA adapter.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from apps.models.demo import CORPUS

SEED = 1234
VOCAB = 1024
END = "<|endoftext|>"
CONTEXT = 128
LAYERS, HIDDEN, HEADS = 2, 64, 2
# Measured here: 8 windows a step reach a lower loss in half the tokens (and time) that 16 do.
BATCH, WINDOW = 8, 64
LR = 3e-3
# The demo's chat format: each message as "Role: text" on its own line, then the assistant's turn to
# continue. The model never trained on chats; this only gives the chat endpoint a real template to
# render (saved as chat_template.jinja; a demo folder made before it chats by DEFAULT_TEMPLATE).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass(frozen=True, slots=True)
class Training:
    """What a training run did, with the loss over the whole text before and after it."""

    steps: int
    seconds: float
    tokens: int
    loss_before: float
    loss_after: float

    def summary(self) -> str:
        rate = self.tokens / self.seconds if self.seconds else 0.0
        return (
            f"loss {self.loss_before:.2f} -> {self.loss_after:.2f} over {self.steps} steps"
            f" ({self.seconds:.1f} s, {rate / 1000:.0f}k tokens/s)"
        )


# Loggers that report each step at INFO, which Django's console handler would print.
_CHATTY = ("torch.onnx", "onnx_ir", "onnxscript", "gguf")


@contextmanager
def quiet() -> Iterator[None]:
    """Keep the libraries' progress bars, advice and step-by-step logs out of the command's output."""
    verbosity = transformers.logging.get_verbosity()
    levels = {name: logging.getLogger(name).level for name in _CHATTY}
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def train_tokenizer(text: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's scheme) learnt from `text`, with the demo's chat
    template: any text encodes."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=END, eos_token=END, model_max_length=CONTEXT
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build(tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """An untrained GPT-2 of LAYERS × HIDDEN with HEADS heads over the tokenizer's vocabulary."""
    end = tokenizer.convert_tokens_to_ids(END)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=CONTEXT,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        # No dropout: a tiny model on a tiny text learns faster without it.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=end,
        eos_token_id=end,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        bos_token_id=end,
        eos_token_id=end,
        pad_token_id=end,
        max_new_tokens=48,
        do_sample=True,
        temperature=0.8,
        top_k=40,
        repetition_penalty=1.2,
    )
    return model


def train(model: torch.nn.Module, ids: torch.Tensor, *, steps: int, lr: float, seed: int) -> Training:
    """Train `model` for `steps` steps, each on BATCH random WINDOW-long pieces of `ids`."""
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr)
    threads = torch.get_num_threads()
    # Matrices this small gain nothing from a second thread, and when another process holds a
    # core the threads wait on each other: measured here, 35k tokens/s on one thread, 1k on two.
    torch.set_num_threads(1)
    try:
        before = corpus_loss(model, ids)
        model.train()
        started = time.monotonic()
        for _ in range(steps):
            starts = torch.randint(0, len(ids) - WINDOW, (BATCH,), generator=generator)
            batch = torch.stack([ids[s : s + WINDOW] for s in starts.tolist()])
            loss = model(input_ids=batch, labels=batch).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        elapsed = time.monotonic() - started
        after = corpus_loss(model, ids)
    finally:
        torch.set_num_threads(threads)
    return Training(steps, elapsed, steps * BATCH * WINDOW, before, after)


@torch.no_grad()
def corpus_loss(model: torch.nn.Module, ids: torch.Tensor) -> float:
    """Mean next-token loss over the whole text in CONTEXT-long pieces, the model in eval mode."""
    model.eval()
    losses = [
        model(input_ids=piece[None], labels=piece[None]).loss.item()
        for piece in ids.split(CONTEXT)
        if len(piece) > 1
    ]
    return sum(losses) / len(losses) if losses else math.nan


def make(folder: Path, *, steps: int) -> Training:
    """Train the tokenizer and the model (`steps` steps) and save both, with a generation config,
    into `folder`."""
    torch.manual_seed(SEED)
    text = CORPUS.read_text(encoding="utf-8")
    tokenizer = train_tokenizer(text)
    model = build(tokenizer)
    ids = torch.tensor(tokenizer(text)["input_ids"])
    training = train(model, ids, steps=steps, lr=LR, seed=SEED)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return training
