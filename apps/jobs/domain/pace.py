"""A running job's pace: steps and tokens per second over its recent window, and the time left."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# The pace is measured over the last this many seconds of reports (at least two reports).
WINDOW_S = 30.0


@dataclass(frozen=True, slots=True)
class PaceNow:
    steps_per_s: float | None
    tokens_per_s: float | None

    def eta_s(self, *, step: int, total: int) -> float | None:
        """Seconds until `total` steps at this pace; None while unknown, 0 when done."""
        if not total:
            return None
        if step >= total:
            return 0.0
        if not self.steps_per_s:
            return None
        return round((total - step) / self.steps_per_s, 1)


@dataclass
class Pace:
    """Reports as (time, step, cumulative tokens); the window drops what is older than WINDOW_S."""

    window_s: float = WINDOW_S
    _seen: deque[tuple[float, int, int]] = field(default_factory=deque)
    _tokens: int = 0

    def add(self, *, step: int, tokens: int, now: float) -> PaceNow:
        self._tokens += max(0, tokens)
        self._seen.append((now, step, self._tokens))
        while len(self._seen) > 2 and now - self._seen[0][0] > self.window_s:
            self._seen.popleft()
        first_at, first_step, first_tokens = self._seen[0]
        elapsed = now - first_at
        if len(self._seen) < 2 or elapsed <= 0:
            return PaceNow(None, None)
        return PaceNow(
            steps_per_s=(step - first_step) / elapsed,
            tokens_per_s=round((self._tokens - first_tokens) / elapsed, 1),
        )
