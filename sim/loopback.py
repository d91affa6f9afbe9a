"""Run the real server process against the simulators on loopback.

``LoopbackCall`` starts the OpenAI Realtime simulator (in this process, OS threads), a CRM
receiver for the leads, the real server as a subprocess (with its own SQLite file next to the log) exactly as deployed (``gunicorn -k eventlet -w 1 server.app:app``, or
another worker class for the gevent proof), and places calls with ``TwilioCaller``. The demo, the
end-to-end tests and the benchmark all use it.

With ``twilio_rest=True`` it also starts Twilio's REST API simulator (``sim.twilio_rest``), gives the
server ``TWILIO_ACCOUNT_SID`` and ``TWILIO_API_BASE_URL`` pointing at it, and the caller registers
its call there and obeys the server's REST updates. Without it, those two variables are removed
from the server's environment: a loopback server never reaches the real Twilio.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from server.storage.db import Store
from sim.calendar_server import PASSWORD_ENV, USER_ENV, CalendarServer
from sim.crm_receiver import CrmReceiver
from sim.realtime_server import RealtimeSimulator
from sim.realtime_session import ReplyScript
from sim.scenario import Scenario
from sim.twilio_caller import CallRecord, TwilioCaller
from sim.twilio_rest import TwilioRestSimulator

ROOT = Path(__file__).resolve().parent.parent
BUSINESS_TIME = "2026-12-01T10:00:00+02:00"
"""The "now" of opening hours on loopback (a Tuesday morning, the shipped businesses are open),
so a call behaves the same whatever the wall clock says; a scenario's ``server_env`` or ``env``
may set another."""
AUTH_TOKEN = "sim-twilio-auth-token"
SIM_API_KEY = "sk-simulated-key-0000"
CRM_SECRET = "sim-crm-signing-secret"
ADMIN_TOKEN = "sim-admin-token"
SIM_ACCOUNT_SID = "AC" + "5a" * 16
BUSINESSES_FILE = ROOT / "config" / "businesses.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackCall:
    def __init__(self, scenario: Scenario, log_path: Path, env: dict[str, str] | None = None,
                 use_simulator: bool = True, worker_class: str = "eventlet", realtime_faults: dict | None = None,
                 graceful_timeout_s: int = 5, crm: CrmReceiver | None = None,
                 database_path: Path | None = None, twilio_rest: bool = False, dial_outcome: str = "answered",
                 profile_lines: tuple[str, ...] = ()) -> None:
        """``realtime_faults``: keyword switches of ``RealtimeSimulator`` (reject_status, handshake_delay_ms).
        ``crm``: a receiver to deliver leads to (one is started when not given). ``database_path``:
        an existing database to start on (a restarted server); by default a fresh one next to the log.
        ``twilio_rest``: start the Twilio REST simulator (``self.twilio_rest``) and point the server
        at it. ``dial_outcome``: what a person the call ``<Dial>``s does (answered, no-answer, busy)."""
        self.realtime_faults = realtime_faults or {}
        self.graceful_timeout_s = graceful_timeout_s
        self.scenario = scenario
        self.log_path = log_path
        self.extra_env = env or {}
        self.use_simulator = use_simulator
        self.worker_class = worker_class
        self.realtime: RealtimeSimulator | None = None
        self.server: subprocess.Popen | None = None
        self.port = 0
        self.crm = crm
        self._own_crm = crm is None
        self.fresh_database = database_path is None
        self.use_twilio_rest = twilio_rest
        self.twilio_rest: TwilioRestSimulator | None = None
        self.dial_outcome = dial_outcome
        self.profile_lines = profile_lines
        """TOML lines added to the locksmith's profile (+97235550100), e.g. ``recording = true``."""
        self.calendar: CalendarServer | None = None
        """The business's CalDAV calendar (Radicale on loopback) when the scenario books visits."""
        self.db_path = database_path or log_path.parent / f"{log_path.stem}.sqlite3"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LoopbackCall":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, boot_timeout_s: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TURN_") and k not in ("TWILIO_ACCOUNT_SID", "TWILIO_API_BASE_URL")}
        if self.use_twilio_rest:
            self.twilio_rest = TwilioRestSimulator(SIM_ACCOUNT_SID, AUTH_TOKEN).start()
            env.update(TWILIO_ACCOUNT_SID=SIM_ACCOUNT_SID, TWILIO_API_BASE_URL=self.twilio_rest.base_url)
        if self.use_simulator:
            self.realtime = RealtimeSimulator(ReplyScript.from_scenario_replies(self.scenario.replies),
                                              self.scenario.first_audio_delay_ms, speedup=self.scenario.speedup,
                                              **self.realtime_faults)
            self.realtime.start()
            env.update(OPENAI_API_KEY=SIM_API_KEY, OPENAI_REALTIME_URL=self.realtime.url)
        if self.crm is None:
            self.crm = CrmReceiver(CRM_SECRET).start()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.fresh_database:
            for stale in self.db_path.parent.glob(self.db_path.name + "*"):
                if stale.is_dir():
                    shutil.rmtree(stale)              # the record writer's journal of that database
                else:
                    stale.unlink()
        profile_lines = list(self.profile_lines)
        if self.scenario.calendar:
            self.calendar = CalendarServer().start()
            if self.scenario.calendar in ("slow", "down"):
                proxy = self.calendar.proxied()
                proxy.blackhole(True) if self.scenario.calendar == "slow" else proxy.cut()
            env.update(self.calendar.env)
            profile_lines += [f'calendar_url = "{self.calendar.url}"', f'calendar_username_env = "{USER_ENV}"',
                              f'calendar_password_env = "{PASSWORD_ENV}"']
        businesses = self.log_path.parent / f"{self.log_path.stem}.businesses.toml"
        lines = []
        for line in BUSINESSES_FILE.read_text(encoding="utf-8").splitlines():
            lines.append(f'crm_webhook_url = "{self.crm.url}"' if line.startswith("crm_webhook_url") else line)
            if line.strip() == 'number = "+97235550100"':
                lines += profile_lines
        businesses.write_text("\n".join(lines), encoding="utf-8")
        env.update(DATABASE_URL=f"sqlite:///{self.db_path}", BUSINESSES_FILE=str(businesses),
                   RECORDS_JOURNAL_DIR=str(self.db_path.parent / f"{self.db_path.name}.journal"),
                   CRM_SECRET_LOCKSMITH=CRM_SECRET, ADMIN_TOKEN=ADMIN_TOKEN)
        self.port = free_port()
        env.setdefault("BUSINESS_TIME", BUSINESS_TIME)
        env.update(PUBLIC_BASE_URL=self.base_url, TWILIO_AUTH_TOKEN=AUTH_TOKEN, PORT=str(self.port),
                   LOG_LEVEL=env.get("LOG_LEVEL", "INFO"), PYTHONUNBUFFERED="1",
                   PYTHONWARNINGS="ignore::DeprecationWarning")
        env.update(self.scenario.env)
        env.update(self.extra_env)
        log = open(self.log_path, "w", encoding="utf-8")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", self.worker_class, "-w", "1", "-b", f"127.0.0.1:{self.port}",
             "--graceful-timeout", str(self.graceful_timeout_s), "server.app:app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + boot_timeout_s
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited with {self.server.returncode}; see {self.log_path}")
            try:
                self.health()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer /healthz within {boot_timeout_s:.0f}s; see {self.log_path}")

    def health(self) -> dict:
        """/healthz's JSON, also while draining (its 503 takes the server out of a load balancer)."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            return json.loads(exc.read())

    def call(self, on_event=None, max_duration_s: float = 120.0) -> CallRecord:
        caller = TwilioCaller(self.base_url, self.scenario, AUTH_TOKEN, on_event=on_event, rest=self.twilio_rest,
                              dial_outcome=self.dial_outcome)
        return caller.run(max_duration_s)

    def wait_idle(self, timeout_s: float = 5.0) -> dict:
        """Poll /healthz until no call, no call green thread and no write waiting for the database
        is left (or the timeout)."""
        deadline = time.monotonic() + timeout_s
        health = self.health()
        while time.monotonic() < deadline and (health["active_calls"] or health["green_threads"]
                                               or health.get("records_pending")):
            time.sleep(0.05)
            health = self.health()
        return health

    def server_pid(self) -> int | None:
        """The gunicorn worker's pid (the process that runs the calls)."""
        if self.server is None:
            return None
        try:
            out = subprocess.run(["pgrep", "-P", str(self.server.pid)], capture_output=True, text=True).stdout
            return int(out.split()[0]) if out.split() else None
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        if self.realtime is not None:
            self.realtime.stop()
        if self.twilio_rest is not None:
            self.twilio_rest.stop()
        if self.crm is not None and self._own_crm:
            self.crm.stop()
        if self.calendar is not None:
            self.calendar.stop()

    def store(self) -> Store:
        """The server's database, opened read-write from this process (SQLite in WAL mode)."""
        return Store(f"sqlite:///{self.db_path}")

    def records(self, settle_s: float = 5.0) -> dict:
        """What the call left behind: the server's leads, calls and outbox counts (read through the
        admin listing once nothing is pending, or after ``settle_s``) and the CRM's receipts."""
        deadline = time.monotonic() + settle_s
        listing = self.admin("leads")
        while listing["outbox"].get("pending") and time.monotonic() < deadline:
            time.sleep(0.1)
            listing = self.admin("leads")
        return {"leads": listing["leads"], "outbox": listing["outbox"], "calls": self.admin("calls")["calls"],
                "crm_received": self.crm.received if self.crm else [],
                "crm_attempts": self.crm.attempts if self.crm else 0,
                "calendar_events": self.calendar.events() if self.calendar else []}

    def admin(self, what: str) -> dict:
        return json.loads(self.admin_bytes(what))

    def admin_bytes(self, what: str) -> bytes:
        """An admin route's body, with the bearer token scripts use (e.g. ``calls/<sid>/timeline.svg``)."""
        request = urllib.request.Request(f"{self.base_url}/admin/{what}",
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.read()

    def metrics(self) -> str:
        """The server's ``/metrics`` exposition (open: the loopback server sets no METRICS_TOKEN)."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=5) as resp:
            return resp.read().decode("utf-8")

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")
