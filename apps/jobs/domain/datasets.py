"""What a dataset row may be, how one is read, and which rows are held out for evaluation.

Pure Python: the dataset services read files and hand lines here; the training and evaluation
runners get `Example`s from the same rules, so a row validation accepted is a row a runner can use.

Shapes (one per file, set by its first good row; a later row of another shape is a bad row):

- text:               {"text": "..."}                       (plain-text files: one row per non-empty line)
- prompt_completion:  {"prompt": "...", "completion": "..."}
- chat:               {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
                      with at least one assistant message (what is learned)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from apps.models.domain import naming


class DatasetFormat(StrEnum):
    JSONL = "jsonl"
    TEXT = "text"


class Shape(StrEnum):
    TEXT = "text"
    PROMPT_COMPLETION = "prompt_completion"
    CHAT = "chat"


class Source(StrEnum):
    DISCOVERED = "discovered"
    UPLOADED = "uploaded"


class Split(StrEnum):
    TRAIN = "train"
    EVAL = "eval"
    ALL = "all"


FORMAT_CHOICES = [(DatasetFormat.JSONL.value, "JSON Lines"), (DatasetFormat.TEXT.value, "Plain text")]
SHAPE_CHOICES = [
    (Shape.TEXT.value, "Text"),
    (Shape.PROMPT_COMPLETION.value, "Prompt / completion"),
    (Shape.CHAT.value, "Chat messages"),
]
SOURCE_CHOICES = [(s.value, s.value.capitalize()) for s in Source]
SUFFIXES = {".jsonl": DatasetFormat.JSONL, ".txt": DatasetFormat.TEXT}
EVAL_SHARE_DEFAULT = 0.1
ROLES = ("system", "user", "assistant")
# A row longer than this is refused (it would be cut to a sequence length anyway, and a line this
# long in a "text" file is most likely a binary file misnamed).
ROW_MAX_CHARS = 1_000_000
# The first bad rows kept on the dataset; the count covers them all.
ERRORS_KEPT = 100
# A problem with the file as a whole (missing, unreadable, empty) is reported as this row.
FILE_ROW = 0
NAME_MAX = naming.NAME_MAX
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Example:
    """One usable row. `prompt` is the part not learned (empty for text rows); `completion` the part
    learned. Chat rows keep their messages for the model's chat template."""

    row: int  # 1-based row number in the file (a plain-text file's line number)
    shape: Shape
    prompt: str = ""
    completion: str = ""
    messages: tuple[tuple[str, str], ...] = ()  # (role, content), chat rows only

    @property
    def text(self) -> str:
        """The whole row as one text (what a causal LM sees without a chat template)."""
        if self.shape == Shape.CHAT:
            return "\n".join(f"{role}: {content}" for role, content in self.messages)
        return self.prompt + self.completion


@dataclass(frozen=True, slots=True)
class RowProblem:
    row: int
    error: str

    def as_json(self) -> dict[str, Any]:
        return {"row": self.row, "error": self.error}


def format_of(name: str) -> DatasetFormat | None:
    """The format a file name says, or None when MOC does not read such files."""
    lower = name.lower()
    return next((fmt for suffix, fmt in SUFFIXES.items() if lower.endswith(suffix)), None)


def parse_line(
    line: str, *, row: int, fmt: DatasetFormat, shape: Shape | None
) -> Example | RowProblem | None:
    """One line as an Example, a RowProblem saying why not, or None for a line that is not a row
    (blank). `shape` is the file's shape so far (None before its first good row)."""
    if not line.strip():
        return None
    if len(line) > ROW_MAX_CHARS:
        return RowProblem(row, f"the row is {len(line):,} characters long; at most {ROW_MAX_CHARS:,}")
    if fmt == DatasetFormat.TEXT:
        return Example(row=row, shape=Shape.TEXT, completion=line.rstrip("\r\n"))
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return RowProblem(row, f"not JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(data, dict):
        return RowProblem(row, f"a row must be a JSON object, not {type(data).__name__}")
    found = _shape_of(data)
    if not isinstance(found, Shape):  # a Shape is a str too: ask for the enum
        return RowProblem(row, found)
    if shape is not None and found != shape:
        return RowProblem(row, f"a {found.value} row in a dataset of {shape.value} rows")
    return _example(data, row=row, shape=found)


def _shape_of(data: dict[str, Any]) -> Shape | str:
    if "messages" in data:
        return Shape.CHAT
    if "prompt" in data or "completion" in data:
        return Shape.PROMPT_COMPLETION
    if "text" in data:
        return Shape.TEXT
    keys = ", ".join(sorted(map(str, data))[:5]) or "none"
    return f"no 'text', 'prompt'/'completion' or 'messages' field (its fields: {keys})"


def _example(data: dict[str, Any], *, row: int, shape: Shape) -> Example | RowProblem:
    if shape == Shape.TEXT:
        text = data["text"]
        if not isinstance(text, str) or not text.strip():
            return RowProblem(row, "'text' must be a non-empty string")
        return Example(row=row, shape=shape, completion=text)
    if shape == Shape.PROMPT_COMPLETION:
        prompt, completion = data.get("prompt"), data.get("completion")
        if not isinstance(prompt, str):
            return RowProblem(row, "'prompt' must be a string")
        if not isinstance(completion, str) or not completion.strip():
            return RowProblem(row, "'completion' must be a non-empty string")
        return Example(row=row, shape=shape, prompt=prompt, completion=completion)
    messages = data["messages"]
    if not isinstance(messages, list) or not messages:
        return RowProblem(row, "'messages' must be a non-empty list")
    pairs: list[tuple[str, str]] = []
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            return RowProblem(row, f"message {i} must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return RowProblem(row, f"message {i}: 'role' must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(content, str):
            return RowProblem(row, f"message {i}: 'content' must be a string")
        pairs.append((role, content))
    if not any(role == "assistant" and content.strip() for role, content in pairs):
        return RowProblem(row, "no assistant message with content: nothing to learn")
    return Example(row=row, shape=shape, messages=tuple(pairs))


def in_eval(row: int, *, share: float, seed: int) -> bool:
    """Whether row `row` is held out for evaluation: a hash of (seed, row) against the share, so the
    split is the same on every machine and every run, and adding rows never moves old ones."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def wanted(row: int, *, split: Split, share: float, seed: int) -> bool:
    """Whether row `row` belongs to `split`."""
    if split == Split.ALL:
        return True
    return in_eval(row, share=share, seed=seed) == (split == Split.EVAL)


def parse_lines(
    lines: Iterable[tuple[int, str | RowProblem]], *, fmt: DatasetFormat
) -> Iterator[Example | RowProblem]:
    """The rows of a file, given its lines as (row number, text or a problem found reading it):
    each an Example or a RowProblem; blank lines are left out. The file's shape is set by its first
    good row, so a later row of another shape is a problem."""
    shape: Shape | None = None
    for row, line in lines:
        if isinstance(line, RowProblem):
            yield line
            continue
        parsed = parse_line(line, row=row, fmt=fmt, shape=shape)
        if parsed is None:
            continue
        if isinstance(parsed, Example):
            shape = parsed.shape
        yield parsed


def decode_line(raw: bytes, *, row: int) -> str | RowProblem:
    """One line's bytes as text, or why not (not UTF-8; a NUL byte, which text never holds). The
    first line loses a UTF-8 byte-order mark, which editors on Windows write."""
    if row == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    nul = raw.find(b"\x00")
    if nul >= 0:
        return RowProblem(row, f"a NUL byte at column {nul + 1}: this is not a text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RowProblem(row, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}")


@dataclass(slots=True)
class Tally:
    """What validation learns of a file, row by row: usable rows, the shape, the bad rows (the first
    ERRORS_KEPT of them) and how many there were."""

    rows: int = 0
    shape: Shape | None = None
    errors: list[RowProblem] = field(default_factory=list)
    error_count: int = 0

    def add(self, item: Example | RowProblem) -> None:
        if isinstance(item, Example):
            self.rows += 1
            self.shape = self.shape or item.shape
            return
        self.problem(item)

    def problem(self, problem: RowProblem) -> None:
        self.error_count += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(problem)

    @property
    def valid(self) -> bool:
        return self.error_count == 0 and self.rows > 0

    def finish(self) -> Tally:
        """The tally, with a problem for a file that held no rows at all."""
        if self.rows == 0 and self.error_count == 0:
            self.problem(RowProblem(FILE_ROW, "the file has no rows"))
        return self


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a dataset, or None: the registry's rule for model names (a dataset's name
    appears in the same places: URLs, paths, lineage)."""
    return naming.name_problem(name)


def name_from(raw: str) -> str:
    """`raw` (a file's path or stem) made into a valid dataset name."""
    stem = raw.rsplit(".", 1)[0] if format_of(raw) else raw
    name = _UNSAFE_NAME_CHARS.sub("-", stem).lstrip("._-")[:NAME_MAX].rstrip("._-")
    return name if name and name_problem(name) is None else "dataset"


def numbered(name: str, n: int, *, limit: int = NAME_MAX) -> str:
    """The n-th alternative of `name` when it is taken ("corpus-2"), within `limit` characters;
    n = 1 is the name itself."""
    if n <= 1:
        return name
    suffix = f"-{n}"
    return name[: limit - len(suffix)] + suffix


def upload_file_name(raw: str) -> str:
    """An uploaded file's name made safe to write: no folders, only [A-Za-z0-9._-], no leading dot.
    Raises ValueError, saying why, for a name MOC does not read (not .jsonl or .txt)."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    suffix = next((s for s in SUFFIXES if base.lower().endswith(s)), None)
    if suffix is None:
        raise ValueError(f"the file name must end in {' or '.join(SUFFIXES)}")
    stem = (
        _UNSAFE_NAME_CHARS.sub("-", base[: -len(suffix)])
        .lstrip("._-")[: NAME_MAX - len(suffix)]
        .rstrip("._-")
    )
    return f"{stem or 'dataset'}{suffix}"
