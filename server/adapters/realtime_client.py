"""One synchronous ``websocket-client`` connection to OpenAI Realtime (green under eventlet).

Sockets only: what to send and how to read it lives in ``server.core.realtime_protocol``.
"""
from __future__ import annotations

import socket

import websocket

from server.settings import Settings


class RealtimeClosed(Exception):
    pass


class RealtimeConnection:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ws: websocket.WebSocket | None = None

    def connect(self, timeout_s: float | None = None, model: str | None = None) -> None:
        """``model``: the session's model (by default ``OPENAI_REALTIME_MODEL``)."""
        if timeout_s is None:
            timeout_s = self._settings.openai_connect_timeout_ms / 1000.0
        # GA interface: no OpenAI-Beta header (the beta shape is refused with close 4000).
        self._ws = websocket.create_connection(
            self._settings.realtime_ws_url_for(model), timeout=timeout_s,
            header=[f"Authorization: Bearer {self._settings.openai_api_key.reveal()}"],
            enable_multithread=True,
            # recv() still decodes each text frame as UTF-8 (in C, which refuses invalid bytes);
            # the library's extra check is pure Python over every byte of every model message
            # (a tenth of a busy worker's time).
            skip_utf8_validation=True)
        self._ws.settimeout(None)

    def send(self, text: str) -> None:
        if self._ws is None:
            raise RealtimeClosed("not connected")
        try:
            self._ws.send(text)
        except (websocket.WebSocketException, OSError) as exc:
            raise RealtimeClosed(str(exc)) from exc

    def recv(self) -> str:
        if self._ws is None:
            raise RealtimeClosed("not connected")
        try:
            data = self._ws.recv()
        except (websocket.WebSocketException, OSError) as exc:
            raise RealtimeClosed(str(exc)) from exc
        if data in ("", b""):
            raise RealtimeClosed("closed by server")
        return data

    def close(self) -> None:
        """Send a close frame, never wait: a live peer's reply then ends our reader's ``recv``.

        ``websocket-client``'s own ``close()`` waits for that reply under the read lock, which our
        reader holds while blocked in ``recv``: with a stalled peer teardown would wait forever.
        A send blocked on a stalled peer holds the send lock, so the frame is skipped then.
        The socket itself is released by ``abort``."""
        ws = self._ws
        if ws is None:
            return
        try:
            if ws.lock.acquire(blocking=False):
                ws.lock.release()
                ws.send_close()
        except Exception:   # noqa: BLE001 - a broken socket must not fail the call teardown
            pass

    def abort(self) -> None:
        """Drop the connection without any handshake (after ``close`` had its chance)."""
        ws, self._ws = self._ws, None
        if ws is None:
            return
        try:
            if ws.sock is not None:
                ws.sock.shutdown(socket.SHUT_RDWR)
            ws.shutdown()
        except Exception:   # noqa: BLE001
            pass
