"""Websocket clients for bench/telemetry_fanout.py: one process holding many connections.

    .venv/bin/python bench/_ws_load.py ws://127.0.0.1:8010/ --clients 500 \\
        [--cookie sessionid=...] [--origin http://127.0.0.1:8010] [--deflate]

It talks to the harness over stdin and stdout, one JSON object a line:

    out  {"connected": 500, "failed": 0, "error": ""}       once every handshake is done
    in   {"ranges": {"node-a": [first_seq, last_seq]}}       report on the messages in those ranges
    out  {"received": ..., "duplicates": ..., "lag_hist": {...}, "max_ms": ..., "closed": ..., ...}

End of input closes the sockets and ends the process. Each message is stamped when it is
read; its lag is that time minus the message's "at" (one machine, one clock).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# Only seq, node and at are needed, so they are picked out of the text instead of decoding
# every message in full: the clients share the machine with the server they measure and
# should spend their CPU on receiving. Device entries have none of these three keys.
TYPE = re.compile(r'"type":\s*"([^"]+)"')
SEQ = re.compile(r'"seq":\s*(\d+)')
NODE = re.compile(r'"node":\s*"([^"\\]*)"')
AT = re.compile(r'"at":\s*(\d+(?:\.\d+)?)')
HANDSHAKES_AT_ONCE = 50


@dataclass
class Tally:
    """What this process's clients received since the last report."""

    records: list[tuple[int, str, int, float]] = field(default_factory=list)
    other: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[str] = field(default_factory=Counter)

    def add(self, client: int, text: str, received_at: float) -> None:
        kind = TYPE.search(text)
        if kind is None or kind.group(1) != "telemetry":
            self.other[kind.group(1) if kind else "?"] += 1
            return
        seq, node, at = SEQ.search(text), NODE.search(text), AT.search(text)
        self.records.append((client, node.group(1), int(seq.group(1)), received_at - float(at.group(1))))

    def report(self, ranges: dict[str, list[int]]) -> dict[str, Any]:
        records, self.records = self.records, []
        kept = [r for r in records if r[1] in ranges and ranges[r[1]][0] <= r[2] <= ranges[r[1]][1]]
        lags_ms = [max(r[3], 0.0) * 1000 for r in kept]
        report = {
            "received": len(kept),
            "duplicates": len(kept) - len({r[:3] for r in kept}),
            "lag_hist": Counter(int(lag * 10) for lag in lags_ms),  # 0.1 ms buckets
            "max_ms": max(lags_ms, default=0.0),
            "closed": sum(self.close_codes.values()),
            "close_codes": dict(self.close_codes),
            "other": dict(self.other),
        }
        self.other.clear()
        return report


async def _open(url: str, opts: argparse.Namespace, gate: asyncio.Semaphore) -> ClientConnection:
    headers = {"Cookie": opts.cookie} if opts.cookie else None
    async with gate:
        return await connect(
            url,
            origin=opts.origin,
            additional_headers=headers,
            compression="deflate" if opts.deflate else None,
            open_timeout=60,
            # No client pings: a client loop busy under load must not close its own socket.
            ping_interval=None,
            max_size=2**22,
        )


async def _read(client: int, ws: ClientConnection, tally: Tally) -> None:
    try:
        async for text in ws:
            tally.add(client, text, time.time())
    except ConnectionClosed:
        pass
    tally.close_codes[str(ws.close_code)] += 1


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main(opts: argparse.Namespace) -> None:
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    opened = await asyncio.gather(
        *(_open(opts.url, opts, gate) for _ in range(opts.clients)), return_exceptions=True
    )
    sockets = [ws for ws in opened if isinstance(ws, ClientConnection)]
    errors = [repr(e) for e in opened if not isinstance(e, ClientConnection)]
    # The lag measured must be the server's, not this process's collector pausing: the
    # connections (which live as long as the process) are put out of its sight, and it
    # runs only between windows, when the harness asks for a report.
    gc.collect()
    gc.freeze()
    gc.disable()
    tally = Tally()
    readers = [asyncio.create_task(_read(i, ws, tally)) for i, ws in enumerate(sockets)]
    _say({"connected": len(sockets), "failed": len(errors), "error": errors[0] if errors else ""})
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        _say(tally.report(json.loads(line)["ranges"]))
        gc.collect()
    if sockets:
        await asyncio.wait([asyncio.create_task(ws.close()) for ws in sockets], timeout=10)
    for reader in readers:
        reader.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--cookie", default="")
    parser.add_argument("--origin", default=None)
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate, as browsers do")
    uvloop.run(main(parser.parse_args()))
