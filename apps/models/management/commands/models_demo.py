"""Make the demo models (a tiny GPT-2, a LoRA adapter, an ONNX export, a GGUF file) in a model root.

Nothing is downloaded: the tokenizer and the weights are trained here, on text MOC ships, in a
few seconds. Needs the "demo" extra; without it the command says what to install.
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
        parser.add_argument("--seconds", type=float, default=5.0, help="Training time for the LM (default 5)")
        parser.add_argument("--force", action="store_true", help="Remake artefacts that already exist")

    def handle(
        self, *args: Any, out: Path | None = None, seconds: float = 5.0, force: bool = False, **options: Any
    ) -> None:
        if seconds < 0:
            raise CommandError("--seconds must be 0 or more")
        if out is None and not settings.MOC_MODEL_ROOTS:
            raise CommandError("MOC_MODEL_ROOTS is empty: pass --out DIR")
        missing = demo.missing_packages()
        if missing:
            raise CommandError(
                f"models_demo needs packages that are not installed: {', '.join(missing)}."
                f" Install the demo extra: {demo.PIP_HINT}"
            )
        folder = Path(out or settings.MOC_MODEL_ROOTS[0]).resolve()
        made = demo.make(folder, seconds=seconds, force=force, log=self.stdout.write)
        wrote = sum(m.made for m in made)
        self.stdout.write(
            self.style.SUCCESS(
                f"{wrote} made, {len(made) - wrote} kept, in {folder}; scan the roots to register them"
            )
        )
