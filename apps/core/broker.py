"""The broker transport: kombu's Redis transport, made to survive a Redis restart (kombu 5.7).

What kills a worker without it. When Redis goes away, Celery's consumer calls
`Connection.collect()`, which closes the connection's channels and then drops the transport's
reference to the connection (`transport.client = None`). Closing is cut short by the first
channel that fails to close: the default channel, on which the task consumer has a BRPOP in
flight, and the remote-control (pidbox) channel, which deletes its auto-delete fanout queue,
both talk to the Redis that just went away. A channel that was not closed then is closed right
after, when Celery releases the connection: it puts back the messages it still holds unacked
(a running acks_late task, an acks-early message whose ack failed with Redis gone), and to do so
builds a new Redis client from `transport.client`, now None: AttributeError ("'NoneType' object
has no attribute 'hostname'"), which Celery does not take for a connection error, so the worker
stops with "Unrecoverable error".

Here a channel whose connection was collected builds no client: it raises a connection error,
which every caller already handles (Celery ignores it on close, logs it on ack). The messages
it held stay in Redis's unacked set, where kombu's `restore_visible` puts them back on their
queue once the visibility timeout has passed: the same outcome as kombu's own when the restore
is tried and Redis is still down, which is what it nearly always is at that moment. An
inference request among them (acks-early, sent with `expires` = its timeout) comes back long
expired and Celery discards it, unrun; its caller had its answer (a timeout) long before.
Delivery rows of acks_late tasks among them are reconciled by `deliveries_reconcile`.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):
    def _create_client(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            log.warning(
                "broker channel used after its connection was collected; the messages it holds "
                "unacked stay in Redis's unacked set, restored after the visibility timeout"
            )
            raise redis.ConnectionError("the broker connection of this channel was collected")
        return super()._create_client(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
