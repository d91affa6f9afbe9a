"""A Realtime endpoint that stops reading: for the "stalled OpenAI socket" fault.

It accepts the WebSocket (wsproto over a raw socket with a 4 KB receive buffer), answers
``session.created`` and ``session.updated`` like the real service, then never reads again, so the
server's sends back up for real (a simple-websocket server would keep buffering in its reader
thread). Loopback only; one thread per connection; ``stop`` closes everything.
"""
from __future__ import annotations

import json
import socket
import threading

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from sim.realtime_session import default_session


class StalledRealtime:
    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # inherited by accepted sockets
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._conns: list[socket.socket] = []
        self.stalled = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._listener.getsockname()[1]}/v1/realtime"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        updated = False
        try:
            while not updated:
                data = conn.recv(65536)
                if not data:
                    return
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        conn.sendall(ws.send(AcceptConnection()))
                        created = {"type": "session.created", "event_id": "event_1", "session": default_session("sess_stall")}
                        conn.sendall(ws.send(TextMessage(json.dumps(created))))
                    elif isinstance(event, TextMessage) and json.loads(event.data).get("type") == "session.update":
                        reply = {"type": "session.updated", "event_id": "event_2", "session": default_session("sess_stall")}
                        conn.sendall(ws.send(TextMessage(json.dumps(reply))))
                        updated = True
            self.stalled.set()          # from here on, nothing is read: the server's sends back up
        except OSError:
            return

    def stop(self) -> None:
        self._listener.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
