"""Every write of a call goes through here, and is kept until the database takes it.

Theory of operation. A call's writes (its start, its lead, its end, the owner's summary, its
recording, its transfer) are *jobs*: a kind, the call, JSON-ready arguments and an idempotency
``key`` (``<call>/<kind>/<n>``). ``put`` never touches the database: it appends the job to the
journal (when one is configured) and queues it. One writer per worker process (``run_forever``,
a green thread) applies the jobs in order, each as one short transaction of ``Store``:

* A job that fails for a reason that passes (the database is down, failing over, blackholed past
  its timeouts, a full disk) is tried again, the same job first, after 0.5 s, 1 s, 2 s ... at most
  ``retry_max_s``: jobs wait behind it (a call's start before its lead), for as long as it takes.
  Every failed attempt is counted; what is pending, and for how long, is always known
  (``pending``, ``oldest_pending_s``: ``/metrics``, ``/healthz?perf=1``, the admin page).
* A job that can never succeed (a bug: a bad argument) is logged with its key, counted and set
  aside in the journal, so it does not hold the others back.
* The journal (``journal_dir``) is one file per worker process, a JSON line per job put and per
  job done. At start, a writer takes over every journal whose process is gone (a restart, a
  crash) and queues its jobs again before any new one. A job applied twice changes nothing:
  the call's start and end and the lead are upserts, and the outbox messages a job queues get
  delivery ids derived from its key (a replay finds them already there).

Until ``run_forever`` starts (the Flask test client, a one-off script) ``put`` applies a job at
once in the caller's thread when nothing is queued before it, as the store did before; a job that
fails then waits in the queue for the writer (or ``drain``).
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, TimeoutError as PoolTimeout

from server import green
from server.leads.capture import LeadSnapshot
from server.storage.db import Store

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.5
DEFAULT_JOURNAL_DIR = Path(__file__).resolve().parents[2] / "data" / "journal"
MAX_PENDING = 20_000
"""Jobs held at most (about 4,000 calls' worth): beyond, a job is refused with an error line and a count."""
_TRANSIENT = (OperationalError, DisconnectionError, PoolTimeout, OSError, TimeoutError)


@dataclass(frozen=True)
class Job:
    key: str
    kind: str
    call_sid: str
    args: dict
    queued_at: float
    """Wall-clock time it was first put (seconds since the epoch): its age survives a restart."""


def lead_args(lead: LeadSnapshot) -> dict:
    return {**asdict(lead), "missing": list(lead.missing)}


def _lead(args: dict) -> LeadSnapshot:
    return LeadSnapshot(**{**args, "missing": tuple(args.get("missing", ()))})


def _pair(value) -> tuple | None:
    return None if value is None else tuple(value)


APPLY: dict[str, Callable[[Store, Job], object]] = {
    "call_started": lambda store, job: store.call_started(
        job.call_sid, job.args["stream_sid"], None, job.args["called"], job.args["caller_masked"],
        business_number=job.args["business_number"]),
    "save_lead": lambda store, job: store.save_lead(
        job.call_sid, _lead(job.args["lead"]), _pair(job.args["deliver_to"]), business=job.args["business"],
        asked_for_person=job.args["asked_for_person"], sms=_pair(job.args["sms"]), delivery_key=job.key),
    "call_ended": lambda store, job: store.call_ended(job.call_sid, **job.args),
    "summary": lambda store, job: store.record_summary(
        job.call_sid, job.args["text"], _pair(job.args["deliver_to"]), business=job.args["business"],
        delivery_key=job.key, usage=job.args.get("usage")),
    "recording": lambda store, job: store.record_recording(job.call_sid, job.args["path"],
                                                           failed=job.args.get("failed", False)),
    "transfer": lambda store, job: store.record_transfer(job.call_sid, **job.args),
}
DELIVERS = frozenset({"save_lead", "summary"})
"""Kinds whose success may have queued an outbox message (the delivery worker is woken)."""


class _Journal:
    """One JSON line per job put (``{"put": job}``) and per job done (``{"done": key}``)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / f"records-{os.getpid()}.jsonl"
        self._file = open(self.path, "a", encoding="utf-8")

    def orphans(self) -> list[Job]:
        """The unfinished jobs of every journal whose process is gone, oldest first; the files are
        taken over (their jobs are written to this journal) and removed."""
        jobs: list[Job] = []
        for path in sorted(self.directory.glob("records-*.jsonl")):
            if path == self.path or _alive(path):
                continue
            found = _unfinished(path)
            for job in found:
                self.put(job)
            jobs += found
            path.unlink(missing_ok=True)
        return sorted(jobs, key=lambda j: j.queued_at)

    def put(self, job: Job) -> None:
        self._write({"put": asdict(job)})

    def done(self, key: str, how: str = "done") -> None:
        self._write({how: key})

    def compact(self) -> None:
        """Nothing pending: start the file afresh."""
        self._file.close()
        self._file = open(self.path, "w", encoding="utf-8")

    def _write(self, line: dict) -> None:
        self._file.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()             # in the page cache: a crash of the process loses nothing

    def sync(self) -> None:
        os.fsync(self._file.fileno())  # and on the disk: the writer does it between jobs


def _alive(path: Path) -> bool:
    try:
        pid = int(path.stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unfinished(path: Path) -> list[Job]:
    pending: dict[str, Job] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue                   # a line cut by a crash
        if "put" in entry:
            job = Job(**entry["put"])
            pending[job.key] = job
        else:
            for how in ("done", "dead"):
                pending.pop(entry.get(how, ""), None)
    return list(pending.values())


class RecordWriter:
    def __init__(self, store: Store, journal_dir: str | None = None, retry_max_s: float = 10.0,
                 job_timeout_s: float = 10.0, max_pending: int = MAX_PENDING,
                 on_delivery: Callable[[], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        """``on_delivery``: called after a job that may have queued an outbox message (wake the
        delivery worker). ``job_timeout_s``: one attempt is abandoned after this long (the
        database's own timeouts first). ``clock``: wall time in seconds (fake time in tests)."""
        self.store = store
        self.retry_max_s = retry_max_s
        self.job_timeout_s = job_timeout_s
        self.max_pending = max_pending
        self.on_delivery = on_delivery
        self.clock = clock
        self._queue: deque[Job] = deque()
        self._counts: dict[tuple[str, str], int] = {}
        self._journal = _Journal(Path(journal_dir)) if journal_dir else None
        self._bell = green.Bell()
        self._background = False
        self._delay_s = 0.0
        self.failures = 0
        """Failed attempts (each retry of a job that failed counts once more)."""
        self.dead = 0
        """Jobs that can never succeed, set aside."""
        self.refused = 0
        """Jobs refused because ``max_pending`` were waiting (never expected)."""
        self.stored = 0
        if self._journal is not None:
            replayed = self._journal.orphans()
            self._queue.extend(replayed)
            if replayed:
                log.warning("[RECORDS] %d writes of a previous process taken over from the journal", len(replayed))

    # --- what callers see -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def oldest_pending_s(self) -> float:
        return max(0.0, self.clock() - self._queue[0].queued_at) if self._queue else 0.0

    def put(self, kind: str, call_sid: str, **args) -> str | None:
        """Queue one write of ``call_sid`` (never blocks on the database); its key, or None when
        refused (``max_pending`` waiting)."""
        if kind not in APPLY:
            raise ValueError(f"unknown record kind {kind!r}")
        n = self._counts.get((call_sid, kind), 0) + 1
        self._counts[(call_sid, kind)] = n
        job = Job(f"{call_sid}/{kind}/{n}", kind, call_sid, args, self.clock())
        if len(self._queue) >= self.max_pending:
            self.refused += 1
            log.error("[RECORDS] %d writes already wait for the database - %s REFUSED (lost)", len(self._queue),
                      job.key)
            return None
        if self._journal is not None:
            self._journal.put(job)
        self._queue.append(job)
        if self._background:
            self._bell.ring()
        elif len(self._queue) == 1:
            self.step()                # no writer thread yet: write now, as the store used to
        return job.key

    # --- the writer -------------------------------------------------------------------------

    def step(self) -> float | None:
        """Apply the oldest job once. None when the queue is empty afterwards; else the seconds to
        wait before the next step (0 after a success, the backoff after a failure)."""
        if not self._queue:
            return None
        job = self._queue[0]
        try:
            with green.deadline(self.job_timeout_s):   # a blackholed link: give up the attempt, not the job
                APPLY[job.kind](self.store, job)
        except _TRANSIENT as exc:
            self.failures += 1
            self._delay_s = min(self.retry_max_s, max(FIRST_RETRY_S, self._delay_s * 2))
            log.warning("[RECORDS] %s could not be stored (%s) - %d writes waiting, retried in %.1fs",
                        job.key, _reason(exc), len(self._queue), self._delay_s)
            return self._delay_s
        except Exception:   # noqa: BLE001 - a job that can never succeed must not hold the others
            self.dead += 1
            log.exception("[RECORDS] %s can never be stored - set aside in the journal", job.key)
            self._finish(job, "dead")
            return 0.0 if self._queue else None
        if self._delay_s:
            log.info("[RECORDS] the database takes writes again: %s stored, %d more waiting", job.key,
                     len(self._queue) - 1)
        self._delay_s = 0.0
        self.stored += 1
        self._finish(job, "done")
        if job.kind in DELIVERS and self.on_delivery is not None:
            self.on_delivery()
        return 0.0 if self._queue else None

    def _finish(self, job: Job, how: str) -> None:
        self._queue.popleft()
        if self._journal is not None:
            self._journal.done(job.key, how)
            if not self._queue:
                self._journal.compact()

    def drain(self, timeout_s: float = 5.0) -> bool:
        """Apply what is queued, retrying until ``timeout_s`` has passed; True when nothing is left."""
        deadline = time.monotonic() + timeout_s
        while self._queue and time.monotonic() < deadline:
            wait = self.step()
            if wait:
                green.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        return not self._queue

    def run_forever(self) -> None:
        """The worker's writer thread (``gunicorn.conf.py`` starts it): from now on ``put`` only queues."""
        self._background = True
        while True:
            wait = self.step()
            if wait is None:
                if self._journal is not None:
                    self._journal.sync()
                self._bell.wait(None)
            elif wait > 0:
                green.sleep(wait)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
