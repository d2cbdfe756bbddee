"""Make the demo models (a tiny GPT-2, a LoRA adapter, an ONNX export, a GGUF file) in a model root.

Nothing is downloaded: the tokenizer and the weights are trained here, on text MOC ships, in a
few seconds. Artefacts that exist are kept, without importing torch, so a second run is quick.
Making anything needs the "demo" extra; without it the command says what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.models import demo


class Command(BaseCommand):
    help = (
        "Make small real demo models (HF causal LM, LoRA adapter, ONNX, GGUF) without downloading anything."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--out", type=Path, help="Folder to write into (default: the first MOC_MODEL_ROOTS)"
        )
        parser.add_argument(
            "--steps",
            type=int,
            default=demo.LM_STEPS,
            help=f"Training steps of the LM (default {demo.LM_STEPS}; fewer: faster, less readable)",
        )
        parser.add_argument("--force", action="store_true", help="Remake artefacts that already exist")

    def handle(
        self,
        *args: Any,
        out: Path | None = None,
        steps: int = demo.LM_STEPS,
        force: bool = False,
        **options: Any,
    ) -> None:
        if steps < 0:
            raise CommandError("--steps must be 0 or more")
        if out is None and not settings.MOC_MODEL_ROOTS:
            raise CommandError("MOC_MODEL_ROOTS is empty: pass --out DIR")
        folder = Path(out or settings.MOC_MODEL_ROOTS[0]).resolve()
        try:
            made = demo.make(folder, steps=steps, force=force, log=self.stdout.write)
        except demo.MissingPackages as missing:
            raise CommandError(
                f"models_demo needs packages that are not installed: {', '.join(missing.args[0])}."
                f" Install the demo extra: {demo.PIP_HINT}"
            ) from None
        wrote = sum(m.made for m in made)
        self.stdout.write(
            self.style.SUCCESS(
                f"{wrote} made, {len(made) - wrote} kept, in {folder}; scan the roots to register them"
            )
        )
