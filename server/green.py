"""The one module that imports the green-thread library (eventlet, as the deployment requires).

Everything else uses ``spawn``/``sleep``/``Queue``/``Event``/``Lock`` from here, so moving to gevent
is a change to this file only: swap the imports below for ``gevent``, ``gevent.queue.Queue``,
``gevent.event.Event`` and ``gevent.lock.Semaphore``. Every thread spawned here is tracked so
``/healthz`` and the tests can prove that a finished call leaves none behind.
"""
from __future__ import annotations

import time
import weakref

import eventlet
import eventlet.event
import eventlet.queue
import eventlet.semaphore

Empty = eventlet.queue.Empty
Full = eventlet.queue.Full
Lock = eventlet.semaphore.Semaphore

_live: "weakref.WeakSet[eventlet.greenthread.GreenThread]" = weakref.WeakSet()


def spawn(fn, *args, **kwargs):
    thread = eventlet.spawn(fn, *args, **kwargs)
    _live.add(thread)
    return thread


def kill(thread) -> None:
    thread.kill()


def is_dead(thread) -> bool:
    return thread.dead


def live_count() -> int:
    return sum(1 for t in list(_live) if not t.dead)


def sleep(seconds: float) -> None:
    eventlet.sleep(seconds)


def Queue(maxsize: int):  # noqa: N802 - reads like a class at call sites
    return eventlet.queue.LightQueue(maxsize)


class Event:
    """A level-triggered flag green threads can wait on (eventlet's own Event is one-shot send)."""

    def __init__(self) -> None:
        self._flag = False
        self._waiters = eventlet.queue.LightQueue()

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


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)
