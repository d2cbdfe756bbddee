"""The live telemetry stream's Redis side: one message per node per sample, encoded once.

A node's message goes out on one pub/sub channel, which every websocket process holds one
subscription to (apps/fleet/relay.py), and is kept as the node's latest for the snapshot
call and /metrics. The schema is documented in docs/TELEMETRY.md.
"""

from __future__ import annotations

import json
from typing import Any

import redis

CHANNEL = "moc:telemetry"
LATEST_KEY = "moc:telemetry:latest"
SEQ_KEY_PREFIX = "moc:telemetry:seq:"
SCHEMA_VERSION = 1

# One script, so numbering, publishing and keeping the latest happen in one round trip and
# in one order: two publishers of one node (the sampler and the offline sweeper) can never
# put seq 8 on the wire before seq 7. The body arrives encoded; the script splices the
# sequence number in as its first key rather than decoding and re-encoding the JSON.
_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
local text = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('PUBLISH', ARGV[2], text)
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], ARGV[3], text)
end
return text
"""


def encode(message: dict[str, Any]) -> str:
    """Compact JSON: the text is sent as it is to every client, so every byte counts."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def telemetry_message(
    *, node: str, node_id: int, at: float, backend: str, devices: list[dict[str, Any]]
) -> dict[str, Any]:
    """A node's devices at one instant (`seq` is added when it is published)."""
    return {
        "type": "telemetry",
        "v": SCHEMA_VERSION,
        "node": node,
        "node_id": node_id,
        "at": round(at, 3),
        "backend": backend,
        "simulated": any(d.get("simulated") for d in devices),
        "devices": devices,
    }


def node_state_message(*, node: str, node_id: int, at: float, state: str, reason: str) -> dict[str, Any]:
    return {
        "type": "node.state",
        "v": SCHEMA_VERSION,
        "node": node,
        "node_id": node_id,
        "at": round(at, 3),
        "state": state,
        "reason": reason,
    }


def publish(client: redis.Redis, message: dict[str, Any]) -> str:
    """Number `message` in its node's sequence and send it; returns the text that went out.

    Telemetry messages also become the node's latest; other kinds only go out.
    """
    node = message["node"]
    keep = "1" if message["type"] == "telemetry" else "0"
    text = client.eval(_PUBLISH, 2, SEQ_KEY_PREFIX + node, LATEST_KEY, encode(message), CHANNEL, node, keep)
    return text.decode() if isinstance(text, bytes) else text


def latest(client: redis.Redis) -> list[dict[str, Any]]:
    """Every node's latest telemetry message, by node name."""
    values = client.hgetall(LATEST_KEY)
    return [json.loads(values[name]) for name in sorted(values)]


def forget(client: redis.Redis, node: str) -> None:
    """Drop a node's latest message (it went offline): snapshots and /metrics stop showing it."""
    client.hdel(LATEST_KEY, node)
