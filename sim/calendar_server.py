"""A real CalDAV server on loopback for the demo and the tests: Radicale, in its own process.

``CalendarServer()`` starts ``python -m radicale`` on a free loopback port with its storage in a
fresh folder and one user (``htpasswd``, plain: the credentials reach it by environment variable
the way a business's do), creates that user's calendar collection (``MKCALENDAR``) and gives its
``url``. Nothing here is a mock of a calendar: the server's own CalDAV answers are what the tools
get, conditional PUTs and calendar queries included. ``events()`` reads back what was written
(raw iCalendar), with a plain HTTP client of its own (never the server's CalDAV adapter).

Faults for the tests go through ``sim.tcp_proxy.TcpProxy`` in front of it (``proxied``): a slow
calendar (``delay_ms``), one that stops answering (``blackhole``), one that is down (``cut``).

    python -m sim.calendar_server            # runs one until Ctrl-C, printing its URL
"""
from __future__ import annotations

import base64
import http.client
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from sim.tcp_proxy import TcpProxy

USER, PASSWORD = "business", "calendar-secret"
USER_ENV, PASSWORD_ENV = "DEMO_CALENDAR_USER", "DEMO_CALENDAR_PASSWORD"
START_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CalendarServer:
    def __init__(self, collection: str = "visits", folder: Path | None = None) -> None:
        self.collection = collection
        self._tmp = None if folder is not None else tempfile.TemporaryDirectory(prefix="radicale-")
        self.folder = Path(folder or self._tmp.name)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.proxy: TcpProxy | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The collection's CalDAV URL (direct, or through the proxy once ``proxied``)."""
        host = self.proxy.url if self.proxy is not None else self.base
        return f"{host}/{USER}/{self.collection}/"

    @property
    def env(self) -> dict[str, str]:
        """The environment a server needs to reach it (the profile names these variables)."""
        return {USER_ENV: USER, PASSWORD_ENV: PASSWORD}

    def start(self) -> "CalendarServer":
        (self.folder / "users").write_text(f"{USER}:{PASSWORD}\n", encoding="utf-8")
        config = self.folder / "radicale.conf"
        config.write_text("\n".join([
            "[server]", f"hosts = 127.0.0.1:{self.port}",
            "[auth]", "type = htpasswd", f"htpasswd_filename = {self.folder / 'users'}", "htpasswd_encryption = plain",
            "[rights]", "type = owner_only",
            "[storage]", f"filesystem_folder = {self.folder / 'collections'}",
            "[logging]", "level = warning", ""]), encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=open(self.folder / "radicale.log", "wb"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self._request("PROPFIND", f"/{USER}/", headers={"Depth": "0"})
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"radicale did not start; see {self.folder / 'radicale.log'}") from None
                time.sleep(0.1)
        status, _ = self._request("MKCALENDAR", f"/{USER}/{self.collection}/")
        if status not in (201, 405):          # 405: it exists already (a folder reused)
            raise RuntimeError(f"radicale refused the calendar: {status}")
        return self

    def proxied(self, delay_ms: int = 0) -> TcpProxy:
        """Put a loopback proxy in front: ``url`` then goes through it (slow, cut, blackholed)."""
        self.proxy = TcpProxy([("127.0.0.1", self.port)], delay_ms=delay_ms)
        return self.proxy

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "CalendarServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- reading back what was written -------------------------------------------------------------

    def put_event(self, name: str, ical: str) -> int:
        """An event of the owner's own (a dentist appointment, a day off), written directly."""
        status, _ = self._request("PUT", f"/{USER}/{self.collection}/{name}", ical,
                                  {"Content-Type": "text/calendar; charset=utf-8"})
        return status

    def events(self) -> list[str]:
        """Every event of the collection, as raw iCalendar text."""
        status, body = self._request("PROPFIND", f"/{USER}/{self.collection}/", headers={"Depth": "1"})
        names = [urllib.parse.unquote(href) for href in re.findall(r"<[^>]*href>([^<]+\.ics)</", body)]
        texts = []
        for href in names:
            status, text = self._request("GET", urllib.parse.urlparse(href).path)
            if status == 200:
                texts.append(text)
        return texts

    def _request(self, method: str, path: str, body: str = "", headers: dict | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        try:
            connection.request(method, path, body.encode("utf-8") if body else None,
                               {"Authorization": f"Basic {token}", **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            connection.close()


def vevent(uid: str, start_utc: str, end_utc: str, summary: str = "busy") -> str:
    """A minimal VEVENT (times as ``20261209T080000Z``), for an owner's own event."""
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//sim//calendar//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:{start_utc}\r\nDTEND:{end_utc}\r\n"
            f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


if __name__ == "__main__":
    with CalendarServer() as server:
        print(f"CalDAV calendar at {server.url} (user {USER}, password {PASSWORD}); Ctrl-C stops it", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
