"""The one module that imports the green-thread library.

Everything else uses ``spawn``/``sleep``/``Queue``/``Event``/``Lock`` from here. The deployment
runs eventlet (gunicorn ``-k eventlet``); gevent is the way out now that eventlet is in
maintenance mode and gunicorn 26 dropped its worker. Both live below, chosen by
``GREEN_BACKEND`` (``eventlet`` by default, ``gevent`` with ``gunicorn -k gevent``), so the switch
is this file and one setting; ``tests/test_gevent_switch.py`` runs a whole call on gevent.
Every call thread spawned here is tracked so ``/healthz`` and the tests can prove that a finished
call leaves none behind.
"""
from __future__ import annotations

import os
import time
import weakref

BACKEND = os.environ.get("GREEN_BACKEND", "eventlet").strip().lower()

if BACKEND == "gevent":
    import gevent
    import gevent.lock
    import gevent.queue

    Empty = gevent.queue.Empty
    Full = gevent.queue.Full
    Lock = gevent.lock.Semaphore
    _spawn, _sleep = gevent.spawn, gevent.sleep

    def _queue(maxsize: int | None):
        return gevent.queue.Queue(maxsize)

    def _timeout(seconds: float, exc: BaseException):
        return gevent.Timeout(seconds, exc)
elif BACKEND == "eventlet":
    # psycopg waits for PostgreSQL in C (the whole hub stops for the round trip) unless it sees a
    # patched ``select``, which it checks for gevent only: under eventlet it must be told, before
    # it is first imported, to wait through ``select.select`` (green once eventlet patched it).
    # Measured through a 50 ms round-trip proxy: the hub stalled 3.5 s over 20 queries in C, at
    # most 8 ms with this.
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
    import eventlet
    import eventlet.queue
    import eventlet.semaphore

    Empty = eventlet.queue.Empty
    Full = eventlet.queue.Full
    Lock = eventlet.semaphore.Semaphore
    _spawn, _sleep = eventlet.spawn, eventlet.sleep

    def _queue(maxsize: int | None):
        return eventlet.queue.LightQueue(maxsize)

    def _timeout(seconds: float, exc: BaseException):
        return eventlet.Timeout(seconds, exc)
else:
    raise ValueError(f"GREEN_BACKEND={BACKEND!r} must be 'eventlet' or 'gevent'")

_live: "weakref.WeakSet" = weakref.WeakSet()


def spawn(fn, *args, **kwargs):
    thread = _spawn(fn, *args, **kwargs)
    _live.add(thread)
    return thread


def spawn_service(fn, *args, **kwargs):
    """A process-long background thread (the outbox worker): not counted among call threads."""
    return _spawn(fn, *args, **kwargs)


def kill(thread) -> None:
    thread.kill()


def is_dead(thread) -> bool:
    return thread.dead


def live_count() -> int:
    return sum(1 for t in list(_live) if not t.dead)


def sleep(seconds: float) -> None:
    _sleep(seconds)


def Queue(maxsize: int):  # noqa: N802 - reads like a class at call sites
    return _queue(maxsize)


class Event:
    """A level-triggered flag green threads can wait on (eventlet's own Event is one-shot send)."""

    def __init__(self) -> None:
        self._flag = False
        self._waiters = _queue(None)

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        self._waiters.put(None)

    def wait(self, timeout_s: float | None = None) -> bool:
        if self._flag:
            return True
        try:
            self._waiters.get(timeout=timeout_s)
            self._waiters.put(None)     # wake the next waiter too
        except Empty:
            pass
        return self._flag


class Bell:
    """A doorbell for one sleeper: ``ring`` never blocks and one pending ring is enough; ``wait``
    returns when rung (True) or after ``timeout_s`` (False)."""

    def __init__(self) -> None:
        self._rings = _queue(1)

    def ring(self) -> None:
        try:
            self._rings.put_nowait(None)
        except Full:
            pass

    def wait(self, timeout_s: float | None = None) -> bool:
        try:
            self._rings.get(timeout=timeout_s)
            return True
        except Empty:
            return False


class DeadlineExceeded(TimeoutError):
    pass


def deadline(seconds: float):
    """A context manager: what runs inside it in this green thread (a socket read, a database
    round trip through a green wait) is interrupted with ``DeadlineExceeded`` after ``seconds``."""
    return _timeout(seconds, DeadlineExceeded(f"no answer within {seconds:g}s"))


class IoDeadline(BaseException):
    """Raised in a tool's I/O at its deadline. Not an ``Exception`` (nor a ``TimeoutError``): HTTP
    clients take a socket timeout for a read timeout and retry or carry on; this ends the I/O."""


def io_deadline(seconds: float):
    """Like ``deadline``, for I/O run through libraries that handle timeouts themselves."""
    return _timeout(seconds, IoDeadline(f"no answer within {seconds:g}s"))


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)
