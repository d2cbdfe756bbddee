"""Worker liveness: each Celery worker reports it is alive to Redis every MOC_WORKER_HEARTBEAT_S.

Two records per worker. A key with a TTL (`moc:worker:<hostname>`), set with the worker's own
MOC_WORKER_SILENT_AFTER_S: while it exists the worker is alive, and a worker that dies simply lets
it expire. Redis expires it on its own clock, so neither a worker's clock running behind the web's
nor a worker beating less often than the web expects makes a live worker look dead. And, per queue
it consumes, the last beat heard (`moc:queue-workers:<queue>`, a hash of hostname -> beat, no TTL),
which outlives the worker: since when it is silent, whether it said goodbye, its restarts. Both
together are how a request for a device knows, before it is sent and in one round trip, that
nothing consumes the device's queue any more and since when (`queue_silence`), instead of waiting
out its timeout. Redis rather than the database because this is a short-lived fact, written often.

A worker that starts where the last beat heard under its hostname was no goodbye (a crash, a
SIGKILL, a power cut) records a `Restart` and carries it, with the count, in every beat it sends,
so the fleet pages show that it restarted and when its dead run was last heard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
import redis.asyncio
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from apps.core import metrics, redis_batch
from apps.core.domain import tones
from apps.core.redis_clients import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "moc:worker:"
QUEUE_PREFIX = "moc:queue-workers:"
_stop = threading.Event()


def _key(hostname: str) -> str:
    return f"{KEY_PREFIX}{hostname}"


def _queue_key(queue: str) -> str:
    return f"{QUEUE_PREFIX}{queue}"


@dataclass(frozen=True, slots=True)
class Restart:
    """A worker started under the hostname of a run that died without saying goodbye."""

    count: int  # such restarts under this hostname, ever (as long as Redis keeps its beats)
    at: float  # when the latest one started
    dead_pid: int  # the run that died
    dead_started: float  # when that run had started
    dead_seen: float  # when it was last heard


def beat(
    client: redis.Redis,
    hostname: str,
    queues: list[str],
    started: float,
    *,
    stopped: bool = False,
    restart: Restart | None = None,
) -> None:
    """Say that `hostname` is alive (or, with `stopped`, that it shut down cleanly just now);
    `restart` is the crash it restarted after, carried in every beat of this run."""
    info = {
        "hostname": hostname,
        "queues": queues,
        "pid": os.getpid(),
        "started": started,
        "seen": time.time(),
        "stopped": stopped,
    }
    if restart is not None:
        info["restart"] = asdict(restart)
    encoded = json.dumps(info)
    with client.pipeline(transaction=False) as pipe:
        if stopped:
            pipe.delete(_key(hostname))
        else:
            pipe.set(_key(hostname), encoded, ex=settings.MOC_WORKER_SILENT_AFTER_S)
        for queue in queues:
            pipe.hset(_queue_key(queue), hostname, encoded)
        pipe.execute()


def live_workers(client: redis.Redis | None = None) -> list[dict[str, Any]]:
    client = client or redis_client()
    keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}*", count=500))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]


def live_queues(client: redis.Redis | None = None) -> set[str]:
    """Every queue at least one live worker consumes."""
    return {queue for worker in live_workers(client) for queue in worker.get("queues", [])}


class WorkerStatus(StrEnum):
    ALIVE = "alive"  # its TTL key exists: it beat within the TTL it chose
    SILENT = "silent"  # its TTL key expired, and no goodbye: taken for dead
    STOPPED = "stopped"  # said goodbye: a clean shutdown


tones.declare({WorkerStatus.ALIVE: "ok", WorkerStatus.SILENT: "bad", WorkerStatus.STOPPED: "warn"})


@dataclass(frozen=True, slots=True)
class Heard:
    """The last beat heard from one worker of a queue."""

    hostname: str
    pid: int
    started: float
    seen: float
    stopped: bool  # it said goodbye: a clean shutdown, not a crash
    restart: Restart | None = None  # the latest crash this hostname restarted after
    # Its TTL key existed when this was read, naming this queue: alive on Redis's clock and the
    # TTL the worker chose, never judged by the reader's clock against `seen` (the worker's).
    alive: bool = False

    def status(self) -> WorkerStatus:
        if self.stopped:
            return WorkerStatus.STOPPED
        return WorkerStatus.ALIVE if self.alive else WorkerStatus.SILENT


def _heard(queue: str, raw: bytes | str, live: bytes | str | None) -> Heard:
    """The beat `raw` of a worker of `queue`, alive when its TTL key's value (`live`) names
    `queue` (a later run under the same hostname may consume other queues)."""
    info = json.loads(raw)
    restart = info.get("restart")
    return Heard(
        hostname=str(info["hostname"]),
        pid=int(info.get("pid") or 0),
        started=float(info.get("started") or 0.0),
        seen=float(info["seen"]),
        stopped=bool(info.get("stopped")),
        restart=Restart(**restart) if restart else None,
        alive=live is not None and queue in json.loads(live).get("queues", []),
    )


# KEYS: the queues' hashes; ARGV[1]: KEY_PREFIX. Per queue, for each worker ever heard on it,
# its last beat then its TTL key's value (false, a nil reply, once expired): one round trip.
_HEARD = """
local out = {}
for i, key in ipairs(KEYS) do
  local beats = redis.call('HGETALL', key)
  local heard = {}
  for j = 1, #beats, 2 do
    heard[#heard + 1] = beats[j + 1]
    heard[#heard + 1] = redis.call('GET', ARGV[1] .. beats[j])
  end
  out[i] = heard
end
return out
"""
_HEARD_LUA = redis_batch.Lua(_HEARD)


def queues_heard(queues: Iterable[str], client: redis.Redis | None = None) -> dict[str, list[Heard]]:
    """queue_heard() of each of `queues`, in one round trip (a page of devices)."""
    wanted = sorted(set(queues))
    if not wanted:
        return {}
    (answers,) = redis_batch.run(client or redis_client(), [heard_command(wanted)])
    return heard_by_queue(wanted, answers)


async def aqueues_heard(queues: Iterable[str], client: redis.asyncio.Redis) -> dict[str, list[Heard]]:
    """queues_heard() for the asynchronous side (the data plane), in the same one round trip."""
    wanted = sorted(set(queues))
    if not wanted:
        return {}
    (answers,) = await redis_batch.arun(client, [heard_command(wanted)])
    return heard_by_queue(wanted, answers)


def heard_command(queues: list[str]) -> redis_batch.Command:
    """The one command that reads the beats of `queues` (for a caller's own pipeline); its reply
    read by heard_by_queue()."""
    return _HEARD_LUA([_queue_key(q) for q in queues], [KEY_PREFIX])


def heard_by_queue(wanted: list[str], answers: list) -> dict[str, list[Heard]]:
    """_HEARD's answer for the queues `wanted`: each queue's beats, latest first."""
    return {
        queue: sorted(
            (_heard(queue, raw, live) for raw, live in zip(pairs[::2], pairs[1::2], strict=True)),
            key=lambda h: h.seen,
            reverse=True,
        )
        for queue, pairs in zip(wanted, answers, strict=True)
    }


def queue_heard(queue: str, client: redis.Redis | None = None) -> list[Heard]:
    """The last beat of every worker that ever consumed `queue`, latest first, each alive or not."""
    return queues_heard([queue], client)[queue]


def heartbeats_settled(client: redis.Redis) -> bool:
    """Redis has been up long enough (MOC_WORKER_SILENT_AFTER_S) for every live worker to have
    beaten since it started: before that, a beat that looks old may only be one its append-only
    file brought back, from a worker that is alive and reconnecting."""
    return _settled(client.info("server"))


def _settled(server_info: dict[str, Any]) -> bool:
    """heartbeats_settled() from Redis's INFO server section."""
    return int(server_info.get("uptime_in_seconds", 0)) > settings.MOC_WORKER_SILENT_AFTER_S


@dataclass(frozen=True, slots=True)
class Silence:
    """Nothing consumes a queue: its last worker, and whether it stopped cleanly or went quiet."""

    queue: str
    last: Heard

    @property
    def since(self) -> float:
        """When it was last heard from."""
        return self.last.seen


def queue_silence(queue: str, *, client: redis.Redis | None = None) -> Silence | None:
    """Why no live worker consumes `queue`, or None while one does, or while that is not known.

    Alive is a worker's TTL key existing (see the module docstring), never the caller's clock
    against the worker's. Not known: no worker of the queue was ever heard of (a Redis that lost
    its data, a queue no worker has consumed yet), or Redis itself has been up for less than
    MOC_WORKER_SILENT_AFTER_S, so the workers have not had the time to beat again since it
    restarted (their TTL keys expired while it was down). Only a worker that was heard of and then
    went silent, or said goodbye, counts. One Redis round trip while a worker is alive, two when
    none is."""
    return queues_silence([queue], client)[queue]


def queues_silence(queues: Iterable[str], client: redis.Redis | None = None) -> dict[str, Silence | None]:
    """queue_silence() of each of `queues`, in one round trip while their workers live."""
    client = client or redis_client()
    return {queue: silence_in(queue, heard, client) for queue, heard in queues_heard(queues, client).items()}


def silence_in(queue: str, heard: list[Heard], client: redis.Redis) -> Silence | None:
    """queue_silence() judged from `heard`, the beats of `queue` already read (queue_heard)."""
    if not _may_be_silent(heard):
        return None
    # The rare path, so the extra round trip is paid only here.
    return _silence(queue, heard, client.info("server"))


async def asilence_in(queue: str, heard: list[Heard], client: redis.asyncio.Redis) -> Silence | None:
    """silence_in() for the asynchronous side: the same rule, the same round trip when none is alive."""
    if not _may_be_silent(heard):
        return None
    return _silence(queue, heard, await client.info("server"))


def _may_be_silent(heard: list[Heard]) -> bool:
    """A worker of the queue was heard of, and none of them is alive."""
    return bool(heard) and not any(h.alive for h in heard)


def _silence(queue: str, heard: list[Heard], server_info: dict[str, Any]) -> Silence | None:
    """The silence of a queue none of whose workers (`heard`) is alive, once heartbeats settled."""
    return Silence(queue=queue, last=heard[0]) if _settled(server_info) else None


def alive_runs(heard: list[Heard]) -> frozenset[tuple[str, float]]:
    """The runs (worker, when it started) alive among `heard`: a worker that restarts is a new run
    under the same name, and the old run's work went with it."""
    return frozenset((h.hostname, h.started) for h in heard if h.alive)


def last_heard(client: redis.Redis, hostname: str, queues: list[str]) -> Heard | None:
    """The latest beat heard under `hostname` on any of `queues`: its previous run's, at start
    (its `alive` is left False: the TTL key under this hostname is this run's from now on)."""
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.hget(_queue_key(queue), hostname)
        answers = pipe.execute()
    heard = [_heard(queue, raw, None) for queue, raw in zip(queues, answers, strict=True) if raw]
    return max(heard, key=lambda h: h.seen, default=None)


def restart_after(previous: Heard | None, *, started: float) -> Restart | None:
    """What a run starting at `started` carries forward from its hostname's previous run: that
    run's own restart when it stopped cleanly, a new one counted on top when it died."""
    if previous is None or previous.stopped:
        return previous.restart if previous else None
    count = previous.restart.count if previous.restart else 0
    return Restart(
        count=count + 1,
        at=started,
        dead_pid=previous.pid,
        dead_started=previous.started,
        dead_seen=previous.seen,
    )


def _loop(hostname: str, queues: list[str], started: float, restart: Restart | None) -> None:
    client = redis_client()
    while not _stop.is_set():
        try:
            beat(client, hostname, queues, started, restart=restart)
        except redis.RedisError as exc:
            log.warning("worker heartbeat to Redis failed: %s", exc)
        except Exception:  # whatever it is: a heartbeat thread that ends makes a live worker look dead
            log.exception("worker heartbeat failed; beating again in %s s", settings.MOC_WORKER_HEARTBEAT_S)
        _stop.wait(settings.MOC_WORKER_HEARTBEAT_S)


def _consumed(sender: Any) -> list[str]:
    return sorted(q.name for q in sender.app.amqp.queues.consume_from.values())


@dataclass
class _Run:
    started: float
    restart: Restart | None
    thread: threading.Thread


_runs: dict[str, _Run] = {}
_goodbye = threading.Lock()  # one goodbye at a time: a second waits until the first is written


def run_started(hostname: str) -> float | None:
    """When this process's run of the worker `hostname` started (with the hostname, the identity
    its heartbeats carry), or None when it is not running here."""
    run = _runs.get(hostname)
    return None if run is None else run.started


def note_restart(hostname: str, queues: list[str], started: float) -> Restart | None:
    """The restart a run starting now carries (restart_after), a crash just before it logged at
    WARNING; None when there is none, or Redis cannot say."""
    try:
        restart = restart_after(last_heard(redis_client(), hostname, queues), started=started)
    except redis.RedisError as exc:
        log.warning(
            "could not read %s's previous beat, so a crash before it is not counted: %s", hostname, exc
        )
        return None
    if restart is not None and restart.at == started:
        log.warning(
            "worker %s restarted after a crash: its previous run (pid %d) was last heard %s, "
            "%.1f s before this start; %d restart(s) after a crash so far",
            hostname,
            restart.dead_pid,
            datetime.fromtimestamp(restart.dead_seen, tz=UTC).isoformat(timespec="seconds"),
            started - restart.dead_seen,
            restart.count,
        )
    return restart


@worker_ready.connect(dispatch_uid="moc-worker-heartbeat-start")
def _start_heartbeat(sender: Any, **kwargs: Any) -> None:
    hostname, queues, started = sender.hostname, _consumed(sender), time.time()
    restart = note_restart(hostname, queues, started)
    _stop.clear()
    thread = threading.Thread(
        target=_loop, args=(hostname, queues, started, restart), name="moc-heartbeat", daemon=True
    )
    _runs[hostname] = _Run(started=started, restart=restart, thread=thread)
    thread.start()
    try:
        metrics.serve_worker_metrics(settings.MOC_WORKER_METRICS_PORT, settings.PROMETHEUS_MULTIPROC_DIR)
    except OSError as exc:  # a port taken by another worker of this machine: run without
        log.warning("worker metrics not served on port %s: %s", settings.MOC_WORKER_METRICS_PORT, exc)


@worker_shutdown.connect(dispatch_uid="moc-worker-heartbeat-stop")
def _stop_heartbeat(sender: Any, **kwargs: Any) -> None:
    goodbye(sender)


def goodbye(worker: Any) -> None:
    """Stop beating for `worker` (the worker or its consumer) and send its last beat, a goodbye,
    so nothing takes this clean stop for a crash. Said once: when a warm shutdown starts
    (apps.core.shutdown), and then again as the worker stops, which waits for the first to be
    written and adds nothing."""
    _stop.set()
    with _goodbye:
        run = _runs.pop(worker.hostname, None)
        if run is None:
            return
        run.thread.join(timeout=2)  # its beat in flight must not land after the goodbye
        with contextlib.suppress(redis.RedisError):
            beat(
                redis_client(),
                worker.hostname,
                _consumed(worker),
                run.started,
                stopped=True,
                restart=run.restart,
            )
