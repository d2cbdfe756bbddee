"""The demo LM exported to ONNX: input_ids in, logits out, with batch and sequence left dynamic."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GPT2LMHeadModel

from apps.models.demo.lm import CONTEXT


class _Logits(torch.nn.Module):
    """Only the logits, without the KV cache outputs that would complicate the graph's signature."""

    def __init__(self, model: GPT2LMHeadModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def write(base: Path, path: Path) -> str:
    """Export the LM in `base` to `path` (weights inside the file) with torch's dynamo exporter."""
    model = GPT2LMHeadModel.from_pretrained(base, local_files_only=True).eval()
    # A batch of 2: the exporter would fix a size-1 dimension as a constant.
    example = torch.zeros((2, 8), dtype=torch.long)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=CONTEXT)}
    torch.onnx.export(
        _Logits(model).eval(),
        (example,),
        path,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": dims},
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return "inputs: input_ids [batch, sequence]; outputs: logits [batch, sequence, vocab]"
