"""Whole calls in noisy places, and short sounds over the AI's reply, built from the real recordings.

The existing real-speech corpus (``bench.real_corpus``) holds one utterance per case; that cannot
see what goes wrong in a café, where the babble goes on while a reply is held, between the turns
and after the last one. These cases are whole calls, sized to give each condition a rate with a
95 % interval, in two parts with disjoint callers and seeds: ``tune`` (the one to look at while
changing the core) and ``held_out`` (never looked at until a change is done).

Conditions
----------
* ``cafe_call``: the caller says 2-3 utterances, each ``ANSWER_GAP_MS`` + 0-1 s after the end of
  the previous one (the AI answered meanwhile), under babble at 10, 15 or 20 dB below the caller:
  3-6 real voices (``voices``) or, one call in four, a crowd (two meeting-room recordings plus two
  voices); on a line without echo (the ``cafe`` preset), a handset line (echo -20 dB, 90 ms) and a
  speakerphone (``speakerphone_cafe``: -6 dB, 250 ms, nonlinear). The babble runs 1-3 s before the
  first utterance, between them, and ``AFTER_MS`` (10 s) after the last: nobody is talking to us
  then, and nothing may be answered.
* ``street_call`` / ``car_call``: the same with street or car noise at SNR 10 or 15 dB.
* ``noise_alone``: babble, a crowd, street or car noise for ``ALONE_MS``, nobody talking to us.
* ``backchannel_reply``: a short real sound (a word said by itself or the first syllable of a
  longer one, 150-400 ms), at the caller's level or 3 or 6 dB under it, 0.5-3 s into the AI's
  reply, on a clean line, a handset, a speakerphone and in a café (babble 15 dB down); one in six is a sound of no word
  (``synthetic_sound``: «mm», a laugh, a cough), which the recordings do not hold labelled.

Callers: ``TUNE_SPEAKERS`` / ``HELD_OUT_SPEAKERS`` (every Hebrew speaker group of the shared
folder is in one of them, other languages are controls, one call in four). Babble voices are
drawn from every speaker but the caller. As with ``bench.real_corpus``, nothing cut from the
recordings is ever written anywhere: the cases are assembled in memory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import real_corpus as rc
from bench.harness import CREATED_MS, FIRST_AUDIO_MS
from bench.vad_corpus import FULL_SCALE_RMS, LEAD_IN_MS, Case

TUNE_SPEAKERS = ("he_sas", "he_shmuelof", "he_ash", "he_gdrive_sample", "he_heitner_mic", "he_ivrit_example",
                 "en_silero", "en_jfk", "de_silero", "ru_silero")
HELD_OUT_SPEAKERS = ("he_ivritpy", "he_bereshit011", "es_silero", "en_osr_0034", "en_rp_harvard")
PARTS = {"tune": (TUNE_SPEAKERS, (101, 102)), "held_out": (HELD_OUT_SPEAKERS, (201, 202))}
"""Part -> (caller speakers, seeds). Each seed draws half of every condition's calls."""

SNRS_DB = (10, 15, 20)
CAFE_LINES = (("no_echo", "cafe", {}),
              ("handset", "handset", {"noise": "babble", "caller_level_dbfs": -26.0}),
              ("speakerphone", "speakerphone_cafe", {}))
CAFE_CALLS_PER_CELL = 4                  # per part: 3 SNRs x 3 lines x 4 = 36 calls
NOISE_CALLS = (("street", 10), ("street", 15), ("car", 10), ("car", 15))
NOISE_CALLS_PER_CELL = 6                 # per part: 24 calls
ALONE = ("voices", "crowd", "street", "car")
ALONE_PER_KIND = 3                       # per part: 12 calls
BACKCHANNEL_LINES = ("clean", "handset", "speakerphone", "cafe")
BACKCHANNELS_PER_LINE = 15               # per part: 60 cases, 50 of them real sounds

UTTERANCE_MS = (400, 6500)
ANSWER_GAP_MS = 4400                     # end of an utterance -> the next (the AI's ~3 s answer between)
BEFORE_MS = (1000, 3000)
AFTER_MS = 10000
ALONE_MS = 12000
REPLY_AUDIO_AT_MS = CREATED_MS + FIRST_AUDIO_MS     # a reply's audio starts this long after its request
BACKCHANNEL_AT_MS = (500, 3000)
CROWD_RECORDINGS = ("en_ami_", "en_voxconverse", "en_pyannote")


# --------------------------------------------------------------------------- sources

def _callers(sources, speakers: tuple[str, ...]) -> list[list[rc.Source]]:
    """The part's callers (recordings grouped by speaker), Hebrew first, in a fixed order."""
    groups = rc._by_speaker(sources)
    return [groups[sp] for sp in speakers if sp in groups]


def _utterances(group: list[rc.Source]) -> list[tuple[rc.Source, tuple[int, int]]]:
    return rc._candidates(group, lambda src: rc.usable_segments(src, *UTTERANCE_MS))


def _caller_plan(callers, n: int) -> list[list[rc.Source]]:
    """n callers in turn: Hebrew in three calls of four, another language in the fourth."""
    hebrew = [g for g in callers if g[0].language == "he" and _utterances(g)]
    other = [g for g in callers if g[0].language != "he" and _utterances(g)]
    plan, h, o = [], 0, 0
    for k in range(n):
        if other and k % 4 == 3:
            plan.append(other[o % len(other)])
            o += 1
        else:
            plan.append(hebrew[h % len(hebrew)])
            h += 1
    return plan


def _crowd(directory: Path, seconds: float, seed: int, exclude: tuple[str, ...]) -> np.ndarray:
    """A crowd: two meeting-room recordings (several far talkers each, real rooms) and two close
    voices, at equal RMS, summed and normalised like ``real_corpus.babble``."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rc.RATE))
    rooms = [s for s in rc.load_sources(directory) if s.stem.startswith(CROWD_RECORDINGS)]
    mix = np.zeros(n)
    for idx in rng.choice(len(rooms), size=min(2, len(rooms)), replace=False):
        src = rooms[int(idx)]
        offset = int(rng.integers(len(src.pcm) // 2))
        room = rc._stitch([np.asarray(src.pcm[offset:]), np.asarray(src.pcm[:offset])], n)
        mix += room / (np.sqrt((room ** 2).mean()) + 1e-9)
    voices = rc.babble(directory, seconds, seed + 7, exclude=exclude, voices=2)
    mix += voices / (np.sqrt((voices ** 2).mean()) + 1e-9)
    return mix / (np.sqrt((mix ** 2).mean()) + 1e-9) * FULL_SCALE_RMS * 10 ** (rc.BABBLE_DBFS / 20)


def _background(directory, kind: str, seconds: float, seed: int, exclude: tuple[str, ...],
                rng: np.random.Generator) -> np.ndarray:
    if kind == "crowd":
        return _crowd(directory, seconds, seed, exclude)
    return rc.babble(directory, seconds, seed, exclude=exclude, voices=int(rng.integers(3, 7)))


# --------------------------------------------------------------------------- calls

def _call_track(rng, group: list[rc.Source], n_utterances: int, tail_ms: int):
    """(caller track, utterance labels): the caller's turns over their own room tone and line
    noise, 1-3 s in, ``ANSWER_GAP_MS`` + 0-1 s apart, ``tail_ms`` after the last."""
    picks = rc._choose(rng, _utterances(group), n_utterances)
    while len(picks) < n_utterances:               # a speaker with few usable turns says one again
        picks.append(picks[len(picks) % max(1, len(picks))])
    at = LEAD_IN_MS + rc._grid(rng.integers(*BEFORE_MS) - LEAD_IN_MS)
    starts = []
    for src, (s, e) in picks:
        starts.append(at)
        at = rc._grid(at + (e - s) + ANSWER_GAP_MS + rng.integers(0, 1000))
    total = rc._grid(starts[-1] + (picks[-1][1][1] - picks[-1][1][0]) + tail_ms)
    room, noise = rc._bed(rng, picks[0][0], total)
    utterances = [rc._insert(room, src, seg, start) for (src, seg), start in zip(picks, starts)]
    return room + noise, utterances, picks[0][0]


def _cafe_calls(directory, callers, seed: int, per_cell: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cells = [(snr, line) for snr in SNRS_DB for line in CAFE_LINES]
    plan = _caller_plan(callers, len(cells) * per_cell)
    cases = []
    for k, group in enumerate(plan):
        snr, (label, preset, overrides) = cells[k % len(cells)]
        kind = "crowd" if k % 4 == 1 else "voices"
        track, utterances, src = _call_track(rng, group, 2 + int(rng.random() < 0.25), AFTER_MS)
        mix = _background(directory, kind, len(track) / rc.RATE, seed * 1000 + k, (src.speaker,), rng)
        cases.append(Case(f"cafe_call/{label}/snr{snr}/{kind}/{src.stem}/s{seed}.{k}", "cafe_call", track,
                          utterances=utterances, line=preset, babble=mix, source="real",
                          line_overrides={**overrides, "snr_db": float(snr), "seed": seed * 1000 + k}))
    return cases


def _noise_calls(callers, seed: int, per_cell: int) -> list[Case]:
    rng = np.random.default_rng(seed + 50)
    plan = _caller_plan(callers, len(NOISE_CALLS) * per_cell)
    cases = []
    for k, group in enumerate(plan):
        kind, snr = NOISE_CALLS[k % len(NOISE_CALLS)]
        track, utterances, src = _call_track(rng, group, 2, AFTER_MS // 2)
        cases.append(Case(f"{kind}_call/snr{snr}/{src.stem}/s{seed}.{k}", f"{kind}_call", track,
                          utterances=utterances, line=kind, source="real",
                          line_overrides={"snr_db": float(snr), "seed": seed * 1000 + 500 + k}))
    return cases


def _alone(directory, seed: int, per_kind: int) -> list[Case]:
    rng = np.random.default_rng(seed + 70)
    cases = []
    for k in range(per_kind * len(ALONE)):
        kind = ALONE[k % len(ALONE)]
        total = LEAD_IN_MS + ALONE_MS
        bed = rc._noise(rng, total * rc.SPR)
        line, mix = kind, None
        if kind in ("voices", "crowd"):
            line = "babble_10"
            mix = _background(directory, kind, total / rc.RATE, seed * 1000 + 800 + k, (), rng)
        snr = float(rng.choice((10, 15)))
        cases.append(Case(f"noise_alone/{kind}/snr{snr:.0f}/s{seed}.{k}", "noise_alone", bed, line=line, babble=mix,
                          source="real", line_overrides={"snr_db": snr, "seed": seed * 1000 + 800 + k}))
    return cases


# --------------------------------------------------------------------------- backchannels

def _synthetic_sound(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A sound of no word at an active level near ``real_corpus.SPEECH_DBFS``: «mm» (a hummed nasal:
    harmonics of a falling f0 through a low formant), a laugh (three breathy voiced bursts) or a
    cough (a noise burst with a sharp attack and a voiced tail)."""
    sr = rc.RATE
    if kind == "mm":
        ms = int(rng.integers(200, 380))
        t = np.arange(ms * rc.SPR) / sr
        f0 = rng.uniform(100, 200) * (1 - 0.15 * t / t[-1])
        phase = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(np.sin(k * phase) * np.exp(-((k * f0 - 250) / 300) ** 2) for k in range(1, 20))
        env = np.minimum(1, np.minimum(t, t[-1] - t) / 0.04)
    elif kind == "laugh":
        parts = []
        f0 = rng.uniform(180, 300)
        for _ in range(3):
            n = int(rng.integers(60, 90)) * rc.SPR
            t = np.arange(n) / sr
            voiced = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
            breath = rng.normal(0, 0.6, n)
            parts += [(voiced + breath) * np.sin(np.pi * np.arange(n) / n), np.zeros(int(rng.integers(40, 70)) * rc.SPR)]
        x = np.concatenate(parts[:-1])
        env = np.ones(len(x))
    else:                                          # cough
        ms = int(rng.integers(180, 320))
        n = ms * rc.SPR
        t = np.arange(n) / sr
        burst = np.convolve(rng.normal(0, 1, n), np.ones(3) / 3, mode="same")
        voiced = sum(np.sin(2 * np.pi * k * rng.uniform(110, 160) * t) / k for k in range(1, 8))
        x = burst * np.exp(-t / 0.06) + 0.4 * voiced * np.exp(-t / 0.12)
        env = np.minimum(1, t / 0.008)
    x = x * env
    level = FULL_SCALE_RMS * 10 ** (rc.SPEECH_DBFS / 20)
    return x / np.sqrt((x[np.abs(x) > 0] ** 2).mean()) * level


def _backchannels(directory, callers, seed: int, per_line: int) -> list[Case]:
    rng = np.random.default_rng(seed + 90)
    ai = rc._ai()
    total = rc._grid(LEAD_IN_MS + len(ai) // rc.SPR + REPLY_AUDIO_AT_MS + 1500)
    sounds = [(g, rc._candidates(g, rc.short_sound_segments)) for g in callers]
    sounds = [(g, c) for g, c in sounds if c]
    cases = []
    for k in range(per_line * len(BACKCHANNEL_LINES)):
        line = BACKCHANNEL_LINES[k % len(BACKCHANNEL_LINES)]
        at = rc._grid(LEAD_IN_MS + REPLY_AUDIO_AT_MS + rng.integers(*BACKCHANNEL_AT_MS))
        gain_db = float(rng.choice((0.0, -3.0, -6.0)))
        group, candidates = sounds[k % len(sounds)]
        src = group[0]
        room, noise = rc._bed(rng, src, total)
        if k % 6 == 5:
            kind = ("mm", "laugh", "cough")[(k // 6) % 3]
            sound = _synthetic_sound(kind, rng) * 10 ** (gain_db / 20)
            room[at * rc.SPR:at * rc.SPR + len(sound)] += sound
            span, what, condition = (at, at + rc._grid(len(sound) / rc.SPR)), kind, "backchannel_synthetic"
        else:
            sound_src, seg = rc._choose(rng, candidates)[0]
            scaled = rc.Source(sound_src.stem, sound_src.speaker, sound_src.language,
                               sound_src.pcm * 10 ** (gain_db / 20), sound_src.labels, sound_src.gain_db)
            span, what, condition = rc._insert(room, scaled, seg, at), sound_src.stem, "backchannel_reply"
        mix = rc.babble(directory, total / 1000, seed * 1000 + 900 + k, exclude=(src.speaker,)) if line == "cafe" else None
        cases.append(Case(f"{condition}/{line}/{what}/{gain_db:+.0f}dB@{at - LEAD_IN_MS - REPLY_AUDIO_AT_MS}ms"
                          f"/s{seed}.{k}", condition, room + noise, reference=ai, backchannels=[span], line=line,
                          babble=mix, source="real", line_overrides={"seed": seed * 1000 + 900 + k}))
    return cases


# --------------------------------------------------------------------------- the corpus

def build(directory: Path, part: str = "tune") -> list[Case]:
    """The calls of one part (``tune`` or ``held_out``); deterministic for a directory."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    directory = Path(directory)
    speakers, seeds = PARTS[part]
    callers = _callers(rc.load_sources(directory), speakers)
    if not callers:
        raise ValueError(f"none of the {part} callers ({', '.join(speakers)}) is in {directory}")
    cases: list[Case] = []
    for i, seed in enumerate(seeds):
        def share(n: int) -> int:                  # this seed's share of n
            return n // len(seeds) + (1 if i < n % len(seeds) else 0)
        cases += _cafe_calls(directory, callers, seed, share(CAFE_CALLS_PER_CELL))
        cases += _noise_calls(callers, seed, share(NOISE_CALLS_PER_CELL))
        cases += _alone(directory, seed, share(ALONE_PER_KIND))
        cases += _backchannels(directory, callers, seed, share(BACKCHANNELS_PER_LINE))
    return cases
