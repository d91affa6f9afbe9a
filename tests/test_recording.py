"""The call recorder: one timeline for both channels, gaps, duplicates, the clock anchor, the
pacer's queue, bounded memory, the WAV file and the retention sweep. Fake clocks throughout."""
import os
import stat
import wave

import numpy as np
import pytest

from server.call import recording
from server.core import ulaw
from server.call.recording import CallRecorder, delete_expired, recording_path

FRAME = 160                     # bytes (= samples) in a 20 ms µ-law frame
SIL = ulaw.silence(20)
SID = "CA" + "0123456789abcdef" * 2


def tone_frames(hz: float, ms: int, amp: int = 8000) -> list[bytes]:
    """A continuous tone cut into 20 ms µ-law frames (phase runs on across frames)."""
    t = np.arange(ms * 8) / 8000.0
    audio = ulaw.encode(np.round(amp * np.sin(2 * np.pi * hz * t)).astype(np.int16))
    return [audio[i:i + FRAME] for i in range(0, len(audio), FRAME)]


def pcm(frames: list[bytes]) -> np.ndarray:
    return ulaw.decode(b"".join(frames)).astype(np.int16)


def read_wav(path) -> tuple[wave._wave_params, np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        data = np.frombuffer(w.readframes(params.nframes), dtype="<i2").reshape(-1, 2)
    return params, data[:, 0].copy(), data[:, 1].copy()


def lag_ms(signal: np.ndarray, reference: np.ndarray) -> int:
    """Where the cross-correlation of ``signal`` with ``reference`` peaks: how many ms ``signal``
    is late against it (FFT, so a whole call stays quick)."""
    a, b = signal.astype(np.float64), reference.astype(np.float64)
    n = len(a) + len(b)
    corr = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    k = int(np.argmax(corr))
    return (k if k < n // 2 else k - n) // 8


def place(length_ms: int, *parts: tuple[int, np.ndarray]) -> np.ndarray:
    out = np.zeros(length_ms * 8, dtype=np.int16)
    for at_ms, samples in parts:
        out[at_ms * 8:at_ms * 8 + len(samples)] = samples
    return out


def test_lag_ms_sees_a_shift():
    ref = place(3000, (1000, pcm(tone_frames(440, 500))))
    assert lag_ms(ref, ref) == 0
    assert lag_ms(np.roll(ref, 800), ref) == 100
    assert lag_ms(np.roll(ref, -400), ref) == -50


# --- one timeline ---------------------------------------------------------------------------

def test_a_call_lines_up_caller_by_timestamp_and_ai_by_play_time(tmp_path):
    """Caller 440 Hz bursts at 1.0 s and 3.0 s by timestamp; the AI's 1 kHz answer starts playing at
    2.0 s caller time (pacing clock 300 ms ahead of the stream's own clock), goes out in 2-frame
    messages the way the pacer sends them (a 40 ms lead burst, then late by up to 15 ms), and is cut
    by a barge-in 600 ms in. Read back, each channel's cross-correlation with what was heard peaks
    at 0 ms, and the samples are exactly those."""
    start_ms, offset_ms = 100_000, 100_300          # the pacing clock's ms at caller-audio time 0
    rec = CallRecorder(start_ms)
    burst = tone_frames(440, 500)
    caller_frames = [SIL] * 250
    caller_frames[50:75] = burst                    # 1.0 s .. 1.5 s
    caller_frames[150:175] = burst                  # 3.0 s .. 3.5 s
    for i, frame in enumerate(caller_frames):
        end_ms = 20 * (i + 1)
        rec.anchor(end_ms, offset_ms + end_ms + (0 if i == 0 else (i * 13) % 40))   # network jitter
        rec.caller(frame, end_ms)

    answer = tone_frames(1000, 1000)                # meant to play 1 s, cut after 600 ms
    base_ms, barge_in_ms = offset_ms + 2000, offset_ms + 2600
    for k in range(len(answer) // 2):
        sent_ms = base_ms + max(0, 40 * k - 40) + (k * 7) % 16
        if sent_ms >= barge_in_ms:
            break                                   # the barge-in stops the TX loop
        rec.played(answer[2 * k] + answer[2 * k + 1], sent_ms)
    rec.cleared(barge_in_ms)                        # and clears what Twilio still had queued

    figures = rec.write_wav(tmp_path / "call.wav")
    params, left, right = read_wav(tmp_path / "call.wav")
    assert (params.nchannels, params.sampwidth, params.framerate, params.nframes) == (2, 2, 8000, 40_000)
    assert figures["frames"] == 40_000 and figures["duration_ms"] == 5000
    assert figures["bytes"] == os.path.getsize(tmp_path / "call.wav") == 44 + 40_000 * 4

    heard_left = place(5000, (1000, pcm(burst)), (3000, pcm(burst)))
    heard_right = place(5000, (2000, pcm(answer[:30])))
    assert abs(lag_ms(left, heard_left)) <= 20
    assert abs(lag_ms(right, heard_right)) <= 20
    np.testing.assert_array_equal(left, heard_left)
    np.testing.assert_array_equal(right, heard_right)
    assert not right[2600 * 8:].any()               # nothing after the barge-in
    assert figures["ai_ms"] == 600 and figures["ai_cleared_ms"] == 40
    assert figures["offset_ms"] == offset_ms and figures["anchored"]


def test_timestamp_gaps_become_silence():
    rec = CallRecorder(0)
    first, second = tone_frames(440, 1000), tone_frames(660, 500)
    for i, frame in enumerate(first):
        rec.caller(frame, 20 * (i + 1))
    for i, frame in enumerate(second):              # Twilio's timestamps jump 500 ms: audio never delivered
        rec.caller(frame, 1500 + 20 * (i + 1))
    left = rec.render()[:, 0]
    assert len(left) == 2000 * 8
    np.testing.assert_array_equal(left, place(2000, (0, pcm(first)), (1500, pcm(second))))
    assert not left[1000 * 8:1500 * 8].any()


def test_duplicated_and_out_of_order_caller_frames_do_not_shift_audio():
    frames = tone_frames(523, 1000)
    clean = CallRecorder(0)
    for i, frame in enumerate(frames):
        clean.caller(frame, 20 * (i + 1))

    messy = CallRecorder(0)
    order = list(range(50))
    order.insert(11, 10)                            # frame 10 twice
    order.remove(20)
    order.insert(order.index(22) + 1, 20)           # frame 20 arrives after frame 22
    for i in order:
        messy.caller(frames[i], 20 * (i + 1))

    expected = clean.render()[:, 0].copy()
    expected[20 * 160:21 * 160] = 0                 # the late frame's slot was passed: silent, not shifted
    np.testing.assert_array_equal(messy.render()[:, 0], expected)
    assert messy.figures()["caller_dropped_ms"] == 40
    assert messy.figures()["caller_ms"] == 980


def test_a_partly_overlapping_caller_frame_keeps_only_its_new_part():
    a, b = tone_frames(440, 40)
    rec = CallRecorder(0)
    rec.caller(a, 20)
    rec.caller(b, 30)                               # covers 10..30 ms: 10..20 was already heard
    left = rec.render()[:, 0]
    assert len(left) == 30 * 8
    np.testing.assert_array_equal(left[:160], ulaw.decode(a))
    np.testing.assert_array_equal(left[160:], ulaw.decode(b[80:]))
    assert rec.figures()["caller_dropped_ms"] == 10


def test_caller_audio_before_the_stream_start_is_dropped():
    rec = CallRecorder(0)
    rec.caller(SIL, 10)                             # claims to start at -10 ms
    assert rec.figures()["caller_ms"] == 10 and rec.figures()["caller_dropped_ms"] == 10


def test_two_frame_messages_play_in_their_own_20_ms_slots():
    a, b, c, d = tone_frames(300, 20)[0], tone_frames(900, 20)[0], tone_frames(1500, 20)[0], tone_frames(2100, 20)[0]
    rec = CallRecorder(5_000)
    rec.played(a + b, 5_100)
    rec.played(c + d, 5_140)
    right = rec.render()[:, 1]
    assert len(right) == 180 * 8
    for slot_ms, frame in ((100, a), (120, b), (140, c), (160, d)):
        np.testing.assert_array_equal(right[slot_ms * 8:slot_ms * 8 + FRAME], ulaw.decode(frame))
    assert not right[:100 * 8].any()


def test_ai_messages_queue_like_twilios_buffer():
    """Sent at once (the pacer's lead) they play back to back; sent a little late they still follow
    on; sent after the queue ran dry (an underrun) they leave silence before them."""
    f = tone_frames(1000, 200)
    rec = CallRecorder(0)
    rec.played(f[0] + f[1], 1000)
    rec.played(f[2] + f[3], 1000)                   # lead burst: plays at 1040
    rec.played(f[4] + f[5], 1055)                   # 25 ms before the queue's end: plays at 1080
    rec.played(f[6] + f[7], 1300)                   # the queue ended at 1120: 180 ms of silence
    right = rec.render()[:, 1]
    np.testing.assert_array_equal(right, place(1340, (1000, pcm(f[:6])), (1300, pcm(f[6:8]))))


def test_the_anchor_maps_the_pacing_clock_to_caller_time():
    """Caller-audio time 0 is pacing 10_500 (the first frame, ending at 20 ms, came in at 10_520):
    AI audio played at pacing 11_500 sits at 1.0 s, next to the caller frame stamped 1.0 s."""
    ai, voice = tone_frames(1000, 20)[0], tone_frames(440, 20)[0]

    def record(anchors, ai_first=False):
        rec = CallRecorder(10_000)
        if ai_first:                                # a greeting played before the first caller frame
            rec.played(ai, 11_500)
        for end_ms, now_ms in anchors:
            rec.anchor(end_ms, now_ms)
        rec.caller(voice, 1020)
        if not ai_first:
            rec.played(ai, 11_500)
        return rec

    for rec in (record([(20, 10_520)]), record([(20, 10_520)], ai_first=True),
                record([(20, 10_520), (40, 10_600)])):        # a later, more delayed frame changes nothing
        out = rec.render()
        assert rec.offset_ms == 10_500
        np.testing.assert_array_equal(out[8000:8160, 0], ulaw.decode(voice))
        np.testing.assert_array_equal(out[8000:8160, 1], ulaw.decode(ai))

    less_delayed = record([(20, 10_520), (60, 10_550)])       # this frame waited 10 ms less
    assert less_delayed.offset_ms == 10_490
    assert np.flatnonzero(less_delayed.render()[:, 1])[0] // 8 == 1010

    unanchored = record([])                         # start_ms stands for caller time 0
    assert unanchored.offset_ms == 10_000 and not unanchored.figures()["anchored"]
    assert np.flatnonzero(unanchored.render()[:, 1])[0] // 8 == 1500


def test_cleared_drops_only_what_was_queued_after_it():
    f = tone_frames(1000, 120)
    rec = CallRecorder(0)
    rec.cleared(50)                                 # nothing played yet: nothing to drop
    rec.played(b"".join(f[:4]), 100)                # 100..180
    rec.cleared(500)                                # long played out
    assert rec.figures()["ai_ms"] == 80 and rec.figures()["ai_cleared_ms"] == 0
    rec.played(b"".join(f[4:6]), 600)               # 600..640
    rec.cleared(610)
    rec.played(f[0], 700)                           # the next answer starts at its own time
    right = rec.render()[:, 1]
    np.testing.assert_array_equal(right, place(720, (100, pcm(f[:4])), (600, pcm(f[4:6])[:80]), (700, pcm(f[:1]))))
    assert rec.figures()["ai_cleared_ms"] == 30


# --- bounds and files -----------------------------------------------------------------------

def test_memory_is_bounded_and_the_rest_is_counted():
    rec = CallRecorder(0, max_ms=1000)
    frame = tone_frames(440, 20)[0]
    for i in range(150):                            # 3 s of each side
        rec.caller(frame, 20 * (i + 1))
        rec.played(frame, 20 * i)
    for _ in range(100):                            # a flood of duplicates
        rec.caller(frame, 20)
    rec.caller(frame, 10 * 3600 * 1000)             # a timestamp 10 h on
    stored = sum(len(d) for _, d in rec._caller.segments) + sum(len(d) for _, d in rec._ai.segments)
    assert stored == 2 * 1000 * 8
    f = rec.figures()
    assert (f["caller_ms"], f["ai_ms"]) == (1000, 1000)
    assert f["over_limit_ms"] == 2000 + 2000 + 20
    assert f["caller_dropped_ms"] == 100 * 20
    assert rec.render().shape == (8000, 2)


def test_a_frame_straddling_the_limit_is_cut_at_it():
    rec = CallRecorder(0, max_ms=30)
    rec.caller(tone_frames(440, 40)[0] + tone_frames(440, 40)[1], 40)
    assert rec.figures()["caller_ms"] == 30 and rec.figures()["over_limit_ms"] == 10


def test_an_empty_call_writes_a_valid_wav_with_no_frames(tmp_path):
    path = recording_path(tmp_path, SID)
    figures = CallRecorder(123).write_wav(path)
    params, left, right = read_wav(path)
    assert (params.nchannels, params.sampwidth, params.framerate, params.nframes) == (2, 2, 8000, 0)
    assert figures["duration_ms"] == 0 and figures["frames"] == 0 and figures["bytes"] == 44


def test_the_wav_is_written_atomically_and_privately(tmp_path, monkeypatch):
    path = recording_path(tmp_path, SID)
    rec = CallRecorder(0)
    rec.caller(tone_frames(440, 20)[0], 20)
    rec.write_wav(path)
    assert sorted(os.listdir(path.parent)) == [path.name]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()

    rec.caller(tone_frames(440, 20)[0], 40)

    def fail(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(recording.os, "replace", fail)
    with pytest.raises(OSError):
        rec.write_wav(path)
    assert path.read_bytes() == before               # the old file is whole, no temp file is left
    assert sorted(os.listdir(path.parent)) == [path.name]
    monkeypatch.undo()
    assert rec.write_wav(path)["frames"] == 320


def test_recording_path_uses_the_call_sid_only(tmp_path):
    assert recording_path(tmp_path, SID) == tmp_path / "recordings" / f"{SID}.wav"
    for bad in ("", "../etc/passwd", "CA1/..", "CA1.wav", "+972501234567", "CA 1"):
        with pytest.raises(ValueError):
            recording_path(tmp_path, bad)


def test_delete_expired_removes_old_recordings_only(tmp_path):
    now_s, day_s = 1_700_000_000, 86400
    folder = tmp_path / "recordings"
    folder.mkdir()
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"x")
    sub = folder / "sub"
    sub.mkdir()

    def make(path, age_days):
        path.write_bytes(b"RIFF")
        os.utime(path, (now_s - age_days * day_s, now_s - age_days * day_s))
        return path

    old = make(folder / "CAold.wav", 40)
    fresh = make(folder / "CAfresh.wav", 1)
    edge = make(folder / "CAedge.wav", 30)           # exactly the retention: kept
    crashed = make(folder / ".CAx.wav.abc123.tmp", 31)
    notes = make(folder / "notes.txt", 90)
    nested = make(sub / "CAnested.wav", 90)
    os.utime(outside, (now_s - 90 * day_s, now_s - 90 * day_s))
    link = folder / "CAlink.wav"
    link.symlink_to(outside)
    os.utime(link, (now_s - 90 * day_s, now_s - 90 * day_s), follow_symlinks=False)
    dir_link = folder / "elsewhere.wav"
    dir_link.symlink_to(tmp_path, target_is_directory=True)

    assert delete_expired(folder, 30, now_s) == sorted([old, crashed])
    for kept in (fresh, edge, notes, nested, outside):
        assert kept.exists()
    assert link.is_symlink() and dir_link.is_symlink()
    assert delete_expired(folder, 30, now_s) == []
    assert delete_expired(folder, 1, now_s + 1) == sorted([edge, fresh])
    assert delete_expired(tmp_path / "missing", 30, now_s) == []
    with pytest.raises(ValueError):
        delete_expired(folder, 0, now_s)


def test_writing_block_by_block_gives_the_whole_render(tmp_path, monkeypatch):
    monkeypatch.setattr(recording, "WRITE_BLOCK_FRAMES", 1000)     # blocks cut through frames and gaps
    rec = CallRecorder(0)
    frames = tone_frames(440, 600)
    for i, frame in enumerate(frames):
        rec.caller(frame, 20 * (i + 1) + (300 if i >= 10 else 0))
    rec.played(b"".join(tone_frames(1000, 400)), 250)
    figures = rec.write_wav(tmp_path / "x.wav")
    params, left, right = read_wav(tmp_path / "x.wav")
    assert params.nframes == figures["frames"] == 900 * 8
    np.testing.assert_array_equal(np.column_stack((left, right)), rec.render())
    np.testing.assert_array_equal(rec.render(3000, 5000), rec.render()[3000:5000])
