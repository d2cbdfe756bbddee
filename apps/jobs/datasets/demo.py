"""The demo datasets: made from the text MOC ships for its demo models (apps/models/demo), so a
fresh install can fine-tune and evaluate the demo LM at once. Deterministic, nothing downloaded.

    demo-corpus.txt     the demo LM's own corpus, one paragraph a row (text)
    demo-status.jsonl   status.txt's reports as prompt ("The GPU is green.") / completion (the rest)
    demo-chat.jsonl     the same reports as chat: "How is the GPU?" answered with the report
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from apps.jobs.domain.datasets import Split, wanted
from apps.models.demo import CORPUS, STATUS

# Small files: a quarter held out, so the eval split of eight rows is not empty.
EVAL_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class DemoFile:
    path: str  # relative to the dataset root
    name: str
    description: str
    text: str
    split_seed: int


def _paragraphs(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _seed_with_both_splits(rows: int) -> int:
    """The first split seed that leaves both splits of `rows` rows (numbered 1..rows) non-empty."""
    seed = 0
    while not all(
        any(wanted(row, split=split, share=EVAL_SHARE, seed=seed) for row in range(1, rows + 1))
        for split in (Split.TRAIN, Split.EVAL)
    ):
        seed += 1
    return seed


def demo_files() -> list[DemoFile]:
    corpus = _paragraphs(CORPUS)
    reports = _paragraphs(STATUS)
    status_rows: list[dict[str, object]] = []
    chat_rows: list[dict[str, object]] = []
    for report in reports:
        head, _, rest = report.partition(". ")
        status_rows.append({"prompt": head + ".", "completion": " " + rest})
        subject = head.removeprefix("The ").removesuffix(" is green")
        chat_rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"How is the {subject}?"},
                    {"role": "assistant", "content": report},
                ]
            }
        )
    # Text rows are lines; JSONL rows too: row n is line n in all three files.
    return [
        DemoFile(
            "demo-corpus.txt",
            "demo-corpus",
            "The demo LM's corpus, one paragraph a row (text).",
            "\n".join(corpus) + "\n",
            _seed_with_both_splits(len(corpus)),
        ),
        DemoFile(
            "demo-status.jsonl",
            "demo-status",
            "Status reports as prompt / completion: the first sentence, then the rest.",
            _jsonl(status_rows),
            _seed_with_both_splits(len(status_rows)),
        ),
        DemoFile(
            "demo-chat.jsonl",
            "demo-chat",
            "Status reports as chat: a question, and the report as the assistant's answer.",
            _jsonl(chat_rows),
            _seed_with_both_splits(len(chat_rows)),
        ),
    ]


def write(root: Path, demo: DemoFile) -> bool:
    """Write `demo` under `root` unless it is there already with the same bytes; whether it wrote.
    Through a dot-named temporary file and a rename, so a scan never sees half a file."""
    target = root / demo.path
    data = demo.text.encode("utf-8")
    if target.is_file() and target.read_bytes() == data:
        return False
    temporary = root / f".{demo.path}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, target)
    return True
