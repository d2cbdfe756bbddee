"""Write the demo datasets into the first dataset root, and register and validate them.

Made from the text MOC ships (apps/models/demo): deterministic, nothing downloaded, quick. A
second run rewrites nothing and validates nothing that did not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.jobs.datasets import demo, services


class Command(BaseCommand):
    help = "Write small demo datasets (text, prompt/completion, chat) into a dataset root and register them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, help="A dataset root to write into (default: the first one)")

    def handle(self, *args: Any, out: Path | None = None, **options: Any) -> None:
        roots = services.configured_roots()
        if out is None and not roots:
            raise CommandError("MOC_DATASET_ROOTS is empty: pass --out DIR")
        root = Path(out or roots[0]).resolve()
        if str(root) not in roots:
            raise CommandError(f"{root} is not a dataset root ({', '.join(roots) or 'none configured'})")
        root.mkdir(parents=True, exist_ok=True)
        for item in demo.demo_files():
            wrote = demo.write(root, item)
            dataset = services.dataset_ensure(
                root=str(root),
                path=item.path,
                name=item.name,
                description=item.description,
                eval_share=demo.EVAL_SHARE,
                split_seed=item.split_seed,
            )
            self.stdout.write(
                f"{dataset.name}: {'written' if wrote else 'kept'}, {dataset.state}, {dataset.rows} rows"
            )
        self.stdout.write(self.style.SUCCESS(f"demo datasets in {root}"))
