"""A steady load on a deployment's public endpoint that keeps every answer and who gave it: what
tests/integration/test_rollout.py and bench/rollout.py read rollouts from. No Django here: the
bench imports it outside any Django process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

# Greedy and short: the demo LM answers in a few ms, so the load is many requests a second.
ASK = {"task": "generate", "input": {"prompt": "The fleet", "max_new_tokens": 4, "temperature": 0}}


@dataclass(frozen=True, slots=True)
class Answer:
    began: float  # time.time() when the request was sent
    ended: float
    status: int
    version: int | None  # the answering version's number, on a 200
    release: int | None  # the answering release's id, on a 200
    error: str  # the error body's code otherwise
    detail: str


class Load:
    """`threads` threads asking a deployment through its public endpoint, each one request after
    another, until the block ends; every answer is kept, in the order they came."""

    def __init__(
        self, base: str, secret: str, deployment: str, *, threads: int = 1, body: dict[str, Any] = ASK
    ) -> None:
        self.url = f"{base}/api/v1/deployments/{deployment}/infer/"
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.body = body
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(self.answers) < 5:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answers from {self.url} within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=60) as client:
            while not self._stop.is_set():
                began = time.time()
                response = client.post(self.url, json=self.body)
                try:
                    body = response.json()
                except ValueError:  # not MOC's answer: a proxy's or the server's own page
                    body = {"error": "not json", "detail": response.text[:200]}
                ok = response.status_code == 200
                answer = Answer(
                    began=began,
                    ended=time.time(),
                    status=response.status_code,
                    version=body["version"]["number"] if ok else None,
                    release=body["release"]["id"] if ok else None,
                    error="" if ok else str(body.get("error", "")),
                    detail="" if ok else str(body.get("detail", "")),
                )
                with self._lock:
                    self.answers.append(answer)

    def since(self, moment: float) -> list[Answer]:
        """The answers to requests sent after `moment` (time.time())."""
        with self._lock:
            return [a for a in self.answers if a.began > moment]
