"""Turn-taking benchmark cases built at run time from real human recordings.

The recordings live outside the repository (``../shared/real-speech/audio/*.wav``: 8 kHz mono
16-bit, Hebrew ``he_*`` first, some ``en_``/``de_``/``es_``/``ru_``); their licences vary, so
nothing cut from them is ever written into the repository: ``build()`` reads them, labels them
with ``sim.speech_labeller`` and assembles ``bench.vad_corpus.Case`` objects in memory. Without
the directory (``real_speech_dir()`` is None) the benchmark reports these cases as "not run".

How a caller track is made
--------------------------
* Each recording (its first ``MAX_SOURCE_S`` seconds) is labelled on the raw samples, freed of
  DC offset and drift (high-pass at 10-30 Hz: several files sit on a wandering offset), then scaled
  so that its speech (the labelled segments) has an active level of ``SPEECH_DBFS`` (-22 dBFS;
  less if that would push a peak over 0.9 of full scale). Levels of recordings are arbitrary
  (-43 to -7 dBFS); soft and loud callers are the job of the line presets.
* The bed under the whole track is ``LINE_NOISE_DBFS`` white noise (as in the synthetic corpus)
  plus the recording's own room tone: its quiet non-speech (cells between 6 dB under the noise
  floor and the labeller's low threshold, ``GUARD_MS`` away from speech), stitched with 10 ms
  crossfades. So the first
  ``LEAD_IN_MS`` (calibration) hold what the caller's line brings before they speak, and
  speech does not start with a step in the noise.
* A labelled segment is cut with ``MARGIN_MS`` of its own surroundings on each side and
  crossfaded into the bed over those margins; its label is the labeller's segment, moved to
  where it was placed (20 ms grid). Thinking pauses are made by placing the next segment of the
  same recording exactly ``pause`` ms after the end of the previous one.

Conditions (deterministic for a seed; Hebrew first; about 6 minutes of audio in all):
``real_speech`` (single utterances, clean line and line presets), ``thinking_pause`` (300-900 ms
pauses inside one utterance), ``backchannel_over_ai`` (a <= 400 ms word while the AI speaks),
``real_barge_in`` (>= 1 s of speech while the AI speaks), ``silence_only`` (room tone only),
``babble_only`` / ``cafe`` (several real voices mixed by ``babble()``), ``speakerphone_echo``
(the AI's own audio coming back, no caller).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sim import speech_labeller
from sim.real_speech import (BABBLE_DBFS, EDGE_MS, LANG_ORDER, MAX_SOURCE_S, NOT_A_CALLER,  # noqa: F401
                             PEAK_LIMIT, RATE, REAL_SPEECH_ENV, SPEAKER_GROUPS, SPEECH_DBFS, SPR, XFADE_MS,
                             Source, _by_speaker, _candidates, _choose, _good, _pairs, _ramp, _stitch, _wav_files,
                             babble, language_of, load_sources, real_speech_dir, short_sound_segments, speaker_of,
                             usable_segments)
from bench.vad_corpus import LEAD_IN_MS, TAIL_MS, Case, _noise, _pcm

MARGIN_MS = 40                      # source context kept (and crossfaded) around a cut segment
GUARD_MS = 80                       # room tone is taken this far from labelled speech
ROOM_BELOW_FLOOR_DB = 6.0           # quieter than floor - 6 dB is a gate or digital silence, not a room
REAL_SPEECH_LINES = (("handset", 2), ("network", 2), ("soft_caller", 2), ("loud_caller", 2),
                     ("lossy", 2), ("street", 2), ("car", 2), ("hum", 2))
MAX_CLEAN_HEBREW = 8
THINKING_PAUSES_MS = (300, 500, 700, 900)
SPEAKERS_PER_PAUSE = 3
BACKCHANNEL_PLAN = (("clean", 1500), ("clean", 2500), ("speakerphone", 1500), ("speakerphone", 3000),
                    ("handset", 2000))
BARGE_IN_PLAN = (("clean", 2000), ("handset", 2000), ("speakerphone", 2000), ("clean", 3000))
SILENCE_MS = 4000
ECHO_VARIANTS = ((-6, 250), (-10, 250), (0, 250), (-6, 100), (-6, 400))




def _non_speech(src: Source, quiet: bool) -> list[tuple[int, int]]:
    """(start, end) ms of non-speech at least GUARD_MS from speech.

    ``quiet``: only runs of >= 150 ms whose energy stays between floor - 6 dB and the low
    threshold (no knocks or breaths, no digital silence or gated stretches).
    """
    lab = src.labels
    edges = [0] + [t for seg in lab.segments for t in seg] + [lab.duration_ms]
    out = []
    for a, b in zip(edges[::2], edges[1::2]):
        a, b = a + GUARD_MS, b - GUARD_MS
        if b - a < 150:
            continue
        if not quiet:
            out.append((a, b))
            continue
        energy = lab.energy_db[a // 10:b // 10]
        cells = (energy < lab.low_dbfs) & (energy > lab.noise_dbfs - ROOM_BELOW_FLOOR_DB)
        for x, y in speech_labeller._runs(cells):
            if (y - x) * 10 >= 150:
                out.append((a + x * 10, a + y * 10))
    return out


def _room_tone(src: Source, n: int, rng: np.random.Generator, quiet: bool = True) -> np.ndarray:
    spans = _non_speech(src, quiet)
    if not spans:
        return np.zeros(n)
    first = int(rng.integers(len(spans)))
    spans = spans[first:] + spans[:first]
    return _stitch([src.pcm[a * SPR:b * SPR] for a, b in spans], n)


def _insert(track: np.ndarray, src: Source, seg: tuple[int, int], at_ms: int) -> tuple[int, int]:
    """Crossfade source segment ``seg`` (with its margins) into ``track`` so its speech starts at at_ms.

    A segment's end that is not the end of a labelled segment (a short sound cut at an energy dip)
    gets no margin (that would carry the next syllable) but a 10 ms fade-out inside the label.
    """
    s, e = seg
    m = MARGIN_MS
    cut = not any(a <= s and e == b for a, b in src.labels.segments)
    tail = 0 if cut else m
    piece = src.pcm[(s - m) * SPR:(e + tail) * SPR]
    w = np.ones(len(piece))
    ramp = _ramp(m * SPR)
    w[:len(ramp)] = ramp
    end_ramp = _ramp((tail or XFADE_MS) * SPR)[::-1]
    w[-len(end_ramp):] = end_ramp
    start = (at_ms - m) * SPR
    region = track[start:start + len(piece)]
    region *= 1.0 - w
    region += piece * w
    return at_ms, at_ms + (e - s)


def _grid(ms: float) -> int:
    return int(-(-ms // 20) * 20)


def _bed(rng: np.random.Generator, src: Source | None, total_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """(room tone of ``src`` or zeros, line noise) for total_ms."""
    n = total_ms * SPR
    room = _room_tone(src, n, rng) if src is not None else np.zeros(n)
    return room, _noise(rng, n)


def _ai() -> np.ndarray:
    return np.concatenate([_pcm("ai_greeting"), _pcm("ai_ask_city")])


# --------------------------------------------------------------------------- the corpus

def _name(condition: str, line: str, src: Source | None, at: int | str) -> str:
    who = src.stem if src is not None else "none"
    return f"{condition}/{line}/{who}@{at}"


def build(directory: Path, seed: int = 20261130) -> list[Case]:
    """The real-speech cases (see the module docstring); deterministic for a directory and seed."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    sources = load_sources(directory)
    speakers = _by_speaker(sources)
    cases: list[Case] = []

    # 1. single utterances: one per speaker (Hebrew: then more files of the same speakers up to
    #    MAX_CLEAN_HEBREW; other languages: one each), then line presets, two Hebrew to one other
    hebrew: list[tuple[Source, tuple[int, int]]] = []
    other: list[tuple[Source, tuple[int, int]]] = []
    languages_done: set[str] = set()
    spare: list[list[Source]] = []
    for speaker, group in speakers.items():
        lang = group[0].language
        if lang != "he" and lang in languages_done:
            continue
        picked = _choose(rng, _candidates(group, lambda src: usable_segments(src, 500, 4000)))
        if not picked:
            continue
        if lang == "he":
            hebrew.append(picked[0])
            spare.append([src for src in group if src is not picked[0][0]])
        else:
            other.append(picked[0])
            languages_done.add(lang)
    for group in spare:
        for src in group:
            if len(hebrew) >= MAX_CLEAN_HEBREW:
                break
            picked = _choose(rng, [(src, seg) for seg in usable_segments(src, 500, 4000)])
            if picked:
                hebrew.append(picked[0])
    hebrew = hebrew[:MAX_CLEAN_HEBREW]
    clean = hebrew + other
    mixed = []
    for k in range(len(clean)):
        if other and k % 3 == 2:
            mixed.append(len(hebrew) + (k // 3) % len(other))
        elif hebrew:
            mixed.append((k - k // 3) % len(hebrew))
    lines = [("clean", i) for i in range(len(clean))]
    k = 0
    for line, count in REAL_SPEECH_LINES:
        for _ in range(count):
            if mixed:
                lines.append((line, mixed[k % len(mixed)]))
                k += 1
    for line, i in lines:
        src, seg = clean[i]
        total = LEAD_IN_MS + (seg[1] - seg[0]) + TAIL_MS
        room, noise = _bed(rng, src, total)
        utt = _insert(room, src, seg, LEAD_IN_MS)
        cases.append(Case(_name("real_speech", line, src, seg[0]), "real_speech", room + noise,
                          utterances=[utt], line=line, source="real"))

    # 2. thinking pauses: two consecutive segments of one speaker, an exact pause between them
    with_pairs = [(sp, g[0].language, _candidates(g, _pairs)) for sp, g in speakers.items()]
    with_pairs = [(sp, lang, _choose(rng, c, len(c))) for sp, lang, c in with_pairs if c]
    # every Hebrew speaker, and one speaker of another language, taken in turn
    with_pairs = ([(sp, c) for sp, lang, c in with_pairs if lang == "he"]
                  + [(sp, c) for sp, lang, c in with_pairs if lang != "he"][:1])
    uses: dict[str, int] = {}
    for k, pause in enumerate(THINKING_PAUSES_MS):
        for j in range(min(SPEAKERS_PER_PAUSE, len(with_pairs))):
            speaker, pairs = with_pairs[(k + j) % len(with_pairs)]
            src, (a, b) = pairs[uses.get(speaker, 0) % len(pairs)]
            uses[speaker] = uses.get(speaker, 0) + 1
            length = (a[1] - a[0]) + pause + (b[1] - b[0])
            room, noise = _bed(rng, src, LEAD_IN_MS + length + TAIL_MS)
            s, pause_start = _insert(room, src, a, LEAD_IN_MS)
            _, e = _insert(room, src, b, pause_start + pause)
            cases.append(Case(_name("thinking_pause", f"{pause}ms", src, a[0]), "thinking_pause", room + noise,
                              utterances=[(s, e)], internal_pause_ms=pause,
                              pauses=[(pause_start, pause_start + pause)], source="real"))

    ai = _ai()
    ai_end = LEAD_IN_MS + len(ai) // SPR
    order = list(speakers.items())

    # 3. backchannels over the AI: a short word that must neither trigger nor cancel
    shorts = [(sp, _choose(rng, _candidates(g, short_sound_segments))) for sp, g in order]
    shorts = [(sp, c[0]) for sp, c in shorts if c]
    for k, (line, after_ms) in enumerate(BACKCHANNEL_PLAN):
        if not shorts:
            break
        _, (src, seg) = shorts[k % len(shorts)]
        total = _grid(ai_end + TAIL_MS)
        room, noise = _bed(rng, src, total)
        bc = _insert(room, src, seg, LEAD_IN_MS + after_ms)
        cases.append(Case(_name("backchannel_over_ai", line, src, seg[0]), "backchannel_over_ai", room + noise,
                          reference=ai, backchannels=[bc], line=line, source="real"))

    # 4. barge-in: >= 1 s of speech while the AI talks
    long_segs = [(sp, _choose(rng, _candidates(g, lambda src: usable_segments(src, 1000, 3000)))) for sp, g in order]
    long_segs = [(sp, c[0]) for sp, c in long_segs if c]
    he_long = [x for x in long_segs if x[1][0].language == "he"]
    other_long = [x for x in long_segs if x[1][0].language != "he"]
    plan_sources = he_long[:len(BARGE_IN_PLAN) - 1] + (other_long[:1] or he_long[len(BARGE_IN_PLAN) - 1:])
    for (line, after_ms), (_, (src, seg)) in zip(BARGE_IN_PLAN, plan_sources):
        onset = LEAD_IN_MS + after_ms
        total = onset + (seg[1] - seg[0]) + TAIL_MS
        room, noise = _bed(rng, src, total)
        utt = _insert(room, src, seg, onset)
        cases.append(Case(_name("real_barge_in", line, src, seg[0]), "real_barge_in", room + noise,
                          reference=ai, utterances=[utt], barge_in_onset_ms=onset, line=line, source="real"))

    # 5. silence: one recording's own non-speech as labelled, nobody talking (the Hebrew and the
    #    other recording with the most quiet room tone: pauses, not a noisy background)
    def room_ms(src: Source) -> int:
        return sum(b - a for a, b in _non_speech(src, True))
    callers = [src for g in speakers.values() for src in g]
    rooms = sorted((src for src in callers if room_ms(src) >= SILENCE_MS), key=lambda src: (-room_ms(src), src.stem))
    picks = [src for src in rooms if src.language == "he"][:1] + [src for src in rooms if src.language != "he"][:1]
    for src in picks:
        # calibration lead-in and tail from its quiet room tone, the 4 s between as labelled
        # (breaths, knocks and all)
        room, noise = _bed(rng, src, LEAD_IN_MS + SILENCE_MS + TAIL_MS)
        pieces = [src.pcm[a * SPR:b * SPR] for a, b in _non_speech(src, False)]
        xf = XFADE_MS * SPR
        middle = _stitch(pieces, SILENCE_MS * SPR + 2 * xf)
        w = np.ones(len(middle))
        w[:xf], w[-xf:] = _ramp(xf), _ramp(xf)[::-1]
        region = room[LEAD_IN_MS * SPR - xf:LEAD_IN_MS * SPR - xf + len(middle)]
        region *= 1.0 - w
        region += middle * w
        cases.append(Case(f"silence_only/clean/{src.stem}", "silence_only", room + noise, source="real"))

    # 6. babble: voices only, and a caller in a cafe
    for k in range(2):
        total = LEAD_IN_MS + SILENCE_MS + TAIL_MS
        mix = babble(directory, total / 1000, seed + 1 + k)
        cases.append(Case(f"babble_only/babble_10/mix{k + 1}", "babble_only", _noise(rng, total * SPR),
                          line="babble_10", babble=mix, source="real"))
    for src, seg in [c for c in clean if c[0].language == "he"][:2]:
        total = LEAD_IN_MS + (seg[1] - seg[0]) + TAIL_MS
        room, noise = _bed(rng, src, total)
        utt = _insert(room, src, seg, LEAD_IN_MS)
        mix = babble(directory, total / 1000, seed + 11 + len(cases), exclude=[src.speaker])
        cases.append(Case(_name("cafe", "cafe", src, seg[0]), "cafe", room + noise, utterances=[utt],
                          line="cafe", babble=mix, source="real"))

    # 7. speakerphone echo: the AI's own voice back from the loudspeaker, no caller
    for gain_db, delay_ms in ECHO_VARIANTS:
        total = _grid(ai_end + TAIL_MS)
        cases.append(Case(f"speakerphone_echo/speakerphone/{gain_db}dB_{delay_ms}ms", "speakerphone_echo",
                          _noise(rng, total * SPR), reference=ai, line="speakerphone",
                          line_overrides={"echo": {"gain_db": gain_db, "delay_ms": delay_ms}}, source="real"))
    return cases
