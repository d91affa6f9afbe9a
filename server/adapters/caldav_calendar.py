"""A business's calendar over CalDAV: what is busy, and a visit written once (the ``caldav`` library).

Synchronous, like every client of a call's I/O: the tools run it off the call's green thread under
a deadline (``RunToolIo``), and the HTTP timeout bounds it as well. Three things are asked of the
server, the ones every CalDAV server answers (Radicale, Nextcloud, iCloud, Fastmail):

* ``busy(start, end, zone)``: the events in a window (a ``calendar-query`` REPORT with the
  recurrences expanded), as (start, end, uid); all-day events take their whole days in ``zone``;
  transparent events (free time) are left out.
* ``create(name, ical)``: a PUT with ``If-None-Match: *``. The resource's name is the visit's slot
  (``visit-<business>-<start>.ics``), so two calls that book the same time write the same
  resource and the server lets exactly one of them create it (``created``); the other gets
  ``exists`` (412). Our own retry of the same booking finds its own event there.
* ``read(name)`` and ``delete(name)``: a booking checked back, or withdrawn when the re-check of
  the calendar finds an owner's event written meanwhile.

Failures (the server down, slow, refusing the credentials) raise ``CalendarUnavailable``.

Time: ``start(budget_s)`` gives one piece of work (a lookup, a booking with its re-reads) a total
budget, and every request gets what is left of it as its HTTP timeout. The caller's deadline
(``RunToolIo``) cannot be trusted to interrupt the library alone: ``caldav`` retries a query
under bare ``except:`` clauses, which swallow a green thread's timeout and start the read again.
"""
from __future__ import annotations

import time as _clock
from datetime import date, datetime, time, timedelta, timezone

import caldav                  # at start, with the tools: a worker's first booking pays no import

UTC = timezone.utc


class CalendarUnavailable(RuntimeError):
    pass


class CalDavCalendar:
    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 timeout_s: float = 2.0) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.username, self.password, self.timeout_s = username, password, timeout_s
        self._client = None
        self._ends_at: float | None = None

    def start(self, budget_s: float) -> None:
        """The work that follows (until the next ``start``) takes at most ``budget_s`` in all."""
        self._ends_at = _clock.monotonic() + budget_s

    def _timeout(self) -> float:
        if self._ends_at is None:
            return self.timeout_s
        left = self._ends_at - _clock.monotonic()
        if left <= 0.05:
            raise CalendarUnavailable("timeout: the calendar did not answer in time")
        return min(self.timeout_s, left)

    def _calendar(self):
        if self._client is None:
            self._client = caldav.DAVClient(url=self.url, username=self.username, password=self.password,
                                            timeout=self.timeout_s)
        self._client.timeout = self._timeout()      # what is left of this piece of work's budget
        return self._client.calendar(url=self.url)

    def busy(self, start: datetime, end: datetime, zone=UTC) -> list[tuple[datetime, datetime, str]]:
        """Busy intervals in [start, end); an all-day event takes its whole day in ``zone``."""
        try:
            events = self._calendar().search(start=start, end=end, event=True, expand=True)
            return sorted(span for event in events for span in _spans(event.icalendar_component, zone))
        except CalendarUnavailable:
            raise
        except Exception as exc:   # noqa: BLE001 - any failure of the server is "unavailable" to the caller
            raise CalendarUnavailable(f"{type(exc).__name__}: {exc}"[:200]) from None

    def create(self, name: str, ical: str) -> str:
        """``created``, or ``exists`` when a resource of that name is there already."""
        response = self._request("PUT", name, ical, {"If-None-Match": "*",
                                                      "Content-Type": "text/calendar; charset=utf-8"})
        if response.status in (200, 201, 204):
            return "created"
        if response.status == 412:
            return "exists"
        raise CalendarUnavailable(f"PUT answered {response.status}")

    def read(self, name: str) -> str | None:
        response = self._request("GET", name)
        if response.status == 404:
            return None
        if response.status != 200:
            raise CalendarUnavailable(f"GET answered {response.status}")
        raw = response.raw
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)

    def delete(self, name: str) -> None:
        self._request("DELETE", name)

    def _request(self, method: str, name: str, body: str = "", headers: dict | None = None):
        try:
            self._calendar()
            return self._client.request(self.url + name, method, body, headers or {})
        except CalendarUnavailable:
            raise
        except Exception as exc:   # noqa: BLE001
            raise CalendarUnavailable(f"{type(exc).__name__}: {exc}"[:200]) from None


def _instant(value, zone) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)    # floating: the business's
    return datetime.combine(value, time(0), tzinfo=zone)      # a date: an all-day event, the business's day


def _spans(component, zone) -> list[tuple[datetime, datetime, str]]:
    start = component.get("dtstart")
    if start is None:
        return []
    begin = _instant(start.dt, zone)
    end_prop = component.get("dtend")
    if end_prop is not None:
        end = _instant(end_prop.dt, zone)
    elif component.get("duration") is not None:
        end = begin + component.get("duration").dt
    else:
        end = begin + (timedelta(days=1) if isinstance(start.dt, date) and not isinstance(start.dt, datetime)
                       else timedelta(0))
    if component.get("transp") is not None and str(component.get("transp")).upper() == "TRANSPARENT":
        return []
    return [(begin, end, str(component.get("uid", "")))]
