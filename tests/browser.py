"""A small headless Chromium driver for the browser tests, over the Chrome DevTools Protocol.

Chromium starts with ``--remote-debugging-port=0`` and a throwaway profile; it writes the port it
chose and the browser's WebSocket path to ``<profile>/DevToolsActivePort``. One WebSocket
(``websocket-client``) carries every command; pages are targets attached in "flat" mode, so their
commands and events travel on the same socket tagged with a ``sessionId``. Events that arrive while
waiting for a reply are kept (bounded) for ``wait_event``. Every wait has a deadline.

Only what the tests need: open a page, evaluate JavaScript, type text, wait for a load or a
condition, read cookies and the requests made. The binary is ``$PROSAAS_CHROMIUM`` or the first of
``chromium``, ``chromium-browser``, ``google-chrome`` on the PATH.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path

import websocket

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--no-default-browser-check",
         "--window-size=1280,900", "--remote-debugging-port=0")


def find_chromium() -> str | None:
    configured = os.environ.get("PROSAAS_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, binary: str, boot_timeout_s: float = 30.0) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="prosaas-chromium-"))
        self.log_path = self.profile / "chromium.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)        # its own process group, ended by id
        self.events: deque[dict] = deque(maxlen=10_000)
        self._next_id = 0
        try:
            port, path = self._devtools_address(boot_timeout_s)
            self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=boot_timeout_s,
                                                  suppress_origin=True)
        except Exception:
            self.close()
            raise

    def _devtools_address(self, timeout_s: float) -> tuple[int, str]:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited with {self.proc.returncode}: {self.log_tail()}")
            lines = marker.read_text().split("\n") if marker.exists() else []
            if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].startswith("/devtools/"):
                return int(lines[0]), lines[1].strip()
            time.sleep(0.05)
        raise CdpError(f"chromium wrote no DevToolsActivePort within {timeout_s}s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _receive(self, deadline: float) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no DevTools message in time")
        self.ws.settimeout(remaining)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException as exc:
            raise TimeoutError("no DevTools message in time") from exc

    def send(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout_s: float = 15.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, session_id: str | None = None, timeout_s: float = 15.0) -> dict:
        """The first (kept or coming) event ``method`` of the session; it is consumed."""
        def mine(ev: dict) -> bool:
            return ev.get("method") == method and (session_id is None or ev.get("sessionId") == session_id)
        for ev in list(self.events):
            if mine(ev):
                self.events.remove(ev)
                return ev
        deadline = time.monotonic() + timeout_s
        while True:
            ev = self._receive(deadline)
            if mine(ev):
                return ev
            if "method" in ev:
                self.events.append(ev)

    def new_page(self) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Network.enable")
        return page

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                try:
                    self.send("Browser.close", timeout_s=5)
                except Exception:
                    pass
                self.ws.close()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)      # the group this driver started, and only it
            self.proc.wait(timeout=10)
        finally:
            self._log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    def send(self, method: str, **params) -> dict:
        return self.browser.send(method, params, self.session_id)

    def _forget(self, method: str) -> None:
        for ev in [e for e in self.browser.events if e.get("method") == method and e.get("sessionId") == self.session_id]:
            self.browser.events.remove(ev)

    def goto(self, url: str, timeout_s: float = 15.0) -> str:
        """Navigate and wait for the load event (after any redirects); returns the final URL."""
        self._forget("Page.loadEventFired")
        self.send("Page.navigate", url=url)
        self.browser.wait_event("Page.loadEventFired", self.session_id, timeout_s)
        return self.evaluate("location.href")

    def click_and_wait_load(self, selector: str, timeout_s: float = 15.0) -> str:
        """Click the element (a link, a submit button) and wait for the page it leads to."""
        self._forget("Page.loadEventFired")
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        self.browser.wait_event("Page.loadEventFired", self.session_id, timeout_s)
        return self.evaluate("location.href")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the field and type ``text`` as keyboard input would insert it."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def evaluate(self, expression: str, await_promise: bool = False):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', result['exceptionDetails'])}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout_s}s: {expression}")
            time.sleep(0.05)

    def cookies(self, url: str) -> list[dict]:
        return self.send("Network.getCookies", urls=[url])["cookies"]

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session_id]

    def screenshot(self, path: Path) -> None:
        """The whole page as PNG (for a person looking into a failure)."""
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
