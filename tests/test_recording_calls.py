"""Opt-in recording on a real call (loopback): the business records, the WAV lines up with what the
simulated caller said and heard, the admin page offers it, and the retention sweep removes it."""
import time
import urllib.error
import urllib.request
import wave

import numpy as np

from server.call.recording_keeper import RecordingKeeper
from sim import scenario as scenario_mod
from sim.loopback import ADMIN_TOKEN, LoopbackCall

BIN_MS = 20


def envelope(samples: np.ndarray, threshold: float) -> np.ndarray:
    """1 per 20 ms bin where the channel is loud, else 0."""
    bins = len(samples) // (8 * BIN_MS)
    rms = np.sqrt(np.mean(samples[: bins * 8 * BIN_MS].astype(np.float64).reshape(bins, -1) ** 2, axis=1))
    return (rms > threshold).astype(np.float64)


def truth(spans_ms: list[tuple[int, int]], bins: int) -> np.ndarray:
    out = np.zeros(bins)
    for start, end in spans_ms:
        out[max(0, start // BIN_MS): max(0, end // BIN_MS)] = 1
    return out


def best_lag_ms(recorded: np.ndarray, expected: np.ndarray, max_lag_bins: int = 25) -> int:
    scores = {lag: float(np.dot(np.roll(expected, lag), recorded)) for lag in range(-max_lag_bins, max_lag_bins + 1)}
    return max(scores, key=scores.get) * BIN_MS


def test_a_recorded_call_lines_up_with_what_was_said_and_played(tmp_path):
    with LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log", profile_lines=("recording = true",),
                      env={"RECORDINGS_DIR": str(tmp_path / "rec")}) as loop:
        record = loop.call(max_duration_s=60)
        loop.wait_idle(timeout_s=5)
        detail = loop.store().call_detail(record.call_sid)
        request = urllib.request.Request(f"{loop.base_url}/admin/calls/{record.call_sid}/recording.wav",
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            downloaded, content_type = resp.read(), resp.headers["Content-Type"]
        page = loop.admin_bytes(f"calls/{record.call_sid}").decode()
        log = loop.log_text()
    path = detail["call"]["recording"]
    assert path.endswith(f"business-1/recordings/{record.call_sid}.wav")
    assert content_type == "audio/wav" and downloaded == open(path, "rb").read() and 'id=recording' in page
    assert "Also say, in one short phrase, that the call is recorded." not in log    # prompts are not logged
    with wave.open(path) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    caller, ai = stereo[:, 0], stereo[:, 1]
    bins = len(stereo) // (8 * BIN_MS)
    said_at = [t for t, kind, _ in record.events if kind == "caller_says"]
    said = truth(list(zip(said_at, record.speech_ends_ms)), bins)
    playing, spans = None, []                            # the AI as the caller's phone played it
    for t_ms, kind, _ in record.events:
        if kind == "ai_audio_playing":
            playing = t_ms
        elif kind == "ai_audio_quiet" and playing is not None:    # said 300 ms after the last voiced frame
            spans.append((playing, t_ms - 300))
            playing = None
    heard = truth(spans, bins)
    caller_lag, ai_lag = best_lag_ms(envelope(caller, 300), said), best_lag_ms(envelope(ai, 300), heard)
    assert abs(caller_lag) <= 100 and abs(ai_lag) <= 100, (caller_lag, ai_lag)
    assert abs(caller_lag - ai_lag) <= 20, (caller_lag, ai_lag)          # the two channels line up
    assert envelope(ai, 300).sum() >= 0.7 * heard.sum()     # the AI is in it (word gaps count as heard there)


def test_the_retention_sweep_removes_old_recordings_only(tmp_path):
    keeper = RecordingKeeper(tmp_path, {"business-1": 30, "default": 7})
    old, new, other = (keeper.path_for(1, "CA" + c * 32) for c in "abc")
    for path in (old, new):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
    default_old = keeper.path_for(None, "CA" + "d" * 32)
    default_old.parent.mkdir(parents=True, exist_ok=True)
    default_old.write_bytes(b"RIFF")
    now = time.time()
    import os
    os.utime(old, (now - 31 * 86400, now - 31 * 86400))
    os.utime(default_old, (now - 8 * 86400, now - 8 * 86400))
    assert sorted(keeper.sweep(now)) == sorted([old, default_old])
    assert new.exists() and not old.exists() and not other.exists()


def test_a_recording_that_cannot_be_written_is_marked_on_the_call_and_counted(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the recordings' folder should be")      # every write under it fails
    with LoopbackCall(scenario_mod.load("two_turns"), tmp_path / "server.log", profile_lines=("recording = true",),
                      env={"RECORDINGS_DIR": str(blocker)}) as loop:
        record = loop.call(max_duration_s=60)
        loop.wait_idle(timeout_s=5)
        page = loop.admin_bytes(f"calls/{record.call_sid}").decode()
        metrics = loop.metrics()
        log = loop.log_text()
    assert "id=recording-failed" in page and "the recording could not be written" in page
    assert "prosaas_recordings_failed_total 1.0" in metrics
    assert "[RECORDING] call" in log and "could not be written" in log and "Traceback" not in log
