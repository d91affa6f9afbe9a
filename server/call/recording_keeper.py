"""Where call recordings live, and for how long.

Each business that opted in (``recording = true`` in its profile) keeps its recordings in its own
folder, ``<RECORDINGS_DIR>/<business>/recordings/<call_sid>.wav``, so that its own
``recording_retention_days`` can be applied to that folder alone. ``sweep`` deletes what is older
(``server.call.recording.delete_expired``); the worker runs it at start and every hour
(``gunicorn.conf.py``). The call's record keeps the path; a swept file is simply gone.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from server.call.recording import delete_expired, recording_path, recordings_dir

log = logging.getLogger(__name__)
SWEEP_INTERVAL_S = 3600
DEFAULT_RECORDINGS_ROOT = Path(__file__).resolve().parents[1] / "data"


class RecordingKeeper:
    def __init__(self, root: str | Path, retention_days: dict[str, int]) -> None:
        """``retention_days``: business key (``business_key``) -> days, for the businesses that record."""
        self.root = Path(root)
        self.retention_days = dict(retention_days)

    @staticmethod
    def business_key(business_id: int | None) -> str:
        return "default" if business_id is None else f"business-{business_id}"

    def path_for(self, business_id: int | None, call_sid: str) -> Path:
        return recording_path(self.root / self.business_key(business_id), call_sid)

    def save(self, recorder, business_id: int | None, call_sid: str, records=None,
             on_failure=None) -> Path | None:
        """The call's recording written at its end, and its path noted on the call's record. A
        failure (a full disk, a folder it may not write) is marked on the call's record and
        ``on_failure`` is called (the metrics count it): the caller was told the call is recorded."""
        try:
            path = self.path_for(business_id, call_sid)
            figures = recorder.write_wav(path)
        except (OSError, ValueError) as exc:
            log.error("[RECORDING] call %s could not be written: %s", call_sid, exc)
            if records is not None:
                records.recording(call_sid, f"{type(exc).__name__}: {exc}", failed=True)
            if on_failure is not None:
                on_failure()
            return None
        log.info("[RECORDING] call %s: %d ms written to %s", call_sid, figures["duration_ms"], path)
        if records is not None:
            records.recording(call_sid, str(path))
        return path

    def sweep(self, now_s: float) -> list[Path]:
        removed: list[Path] = []
        for key, days in self.retention_days.items():
            removed += delete_expired(recordings_dir(self.root / key), days, now_s)
        if removed:
            log.info("[RECORDING] %d recording(s) past their retention deleted", len(removed))
        return removed

    def sweep_forever(self) -> None:
        from server import green
        while True:
            try:
                self.sweep(time.time())
            except OSError as exc:
                log.error("[RECORDING] retention sweep failed (%s) - trying again in an hour", exc)
            green.sleep(SWEEP_INTERVAL_S)
