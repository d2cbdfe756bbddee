"""A worker's broker connection lost mid-delivery is cleaned up without killing the worker.

Driven through kombu's real Redis transport (the one settings name), against the session
redis-server, in the order Celery's consumer goes through it when Redis stops: a task message
taken, a BRPOP in flight for the next one, the message's ack failing, `Connection.collect()`,
then the connection released.
"""

from __future__ import annotations

import time

from kombu import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu.asynchronous import Hub
from kombu.common import ignore_errors

from moc_site.celery import app
from tests.procs import RedisServer

TASKS = Queue("broker-test", Exchange("broker-test"), routing_key="broker-test")
# Celery's remote-control queue has this shape: a fanout queue deleted when its channel closes.
CONTROL = Queue("broker-test.pidbox", Exchange("broker-test.pidbox", type="fanout"), auto_delete=True)


def _publish(*numbers: int) -> None:
    with app.connection_for_write() as conn:
        producer = Producer(conn)
        for n in numbers:
            producer.publish({"n": n}, exchange=TASKS.exchange, routing_key="broker-test", declare=[TASKS])


def _take_one_and_poll_for_more(conn: Connection) -> Message:
    """Consume as Celery's event loop does; returns with a message held and a BRPOP in flight."""
    taken: list[Message] = []
    Consumer(conn, [TASKS], callbacks=[lambda body, msg: taken.append(msg)], prefetch_count=4).consume()
    Consumer(conn.channel(), [CONTROL], callbacks=[lambda body, msg: None]).consume()
    hub = Hub()
    conn.transport.register_with_event_loop(conn.connection, hub)
    loop = hub.create_loop()
    with app.connection_for_write() as producer:
        Producer(producer).publish(
            {"n": 1}, exchange=TASKS.exchange, routing_key="broker-test", declare=[TASKS]
        )
    deadline = time.monotonic() + 10
    while not taken and time.monotonic() < deadline:
        next(loop)
    next(loop)  # the next BRPOP goes out
    assert taken
    assert conn.default_channel._in_poll
    return taken[0]


def test_a_connection_lost_while_a_message_is_unacked_is_released_without_error(redis_server: RedisServer):
    conn = app.connection_for_read()
    conn.ensure_connection()
    message = _take_one_and_poll_for_more(conn)
    redis_server.stop()
    try:
        ignore_errors(conn, message.ack)  # "Couldn't ack": Redis is gone

        # What Celery's consumer does after a connection error (on_connection_error_after_connected).
        conn.collect(socket_timeout=0.25)
        ignore_errors(conn, conn.close)  # without the fix: AttributeError, "Unrecoverable error"
    finally:
        redis_server.start()

    # The message was not lost: it waits in the unacked set for the visibility timeout.
    assert redis_server.client().hexists("unacked", message.delivery_tag)
