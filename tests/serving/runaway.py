"""A model whose load runs away: the demo LM's folder with only config.json changed to claim a far
larger model, as in the report behind issue 11. transformers builds every tensor the config names
(filling those the weights lack) before it finds that the weights do not fit, so the load takes
memory in proportion to the claim, slowly, then fails: a real load that outgrows any small
reservation, and a slow one to stop in the middle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from apps.models import demo


def inflated_lm(demo_models: Path, into: Path, *, layers: int = 12, hidden: int = 768) -> Path:
    """A copy of the demo LM claiming `layers` x `hidden` (12 x 768 builds about 400 MiB of float32
    tensors, 24 x 1024 about 1.2 GiB)."""
    folder = into / "inflated-lm"
    shutil.copytree(demo_models / demo.BASE, folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config.update(n_layer=layers, n_embd=hidden, n_head=hidden // 64)
    config_path.write_text(json.dumps(config))
    return folder
