"""What a call costs: the model's list prices per kind of token, transcription and the phone line (pure).

A response's ``usage`` (``realtime_protocol.Usage``) counts six kinds of tokens; each has its price
per million tokens for the call's model. The shipped table holds today's list prices of
``gpt-realtime`` and ``gpt-realtime-mini``; ``MODEL_PRICES`` (JSON, the same shape) overrides or adds
models without a release. A model missing from the table is counted all the same, its cost is
``None`` ("unknown"), and nothing else changes. Input transcription is billed per minute of audio
(or per token, which has no shipped price); the phone line per minute at ``TWILIO_MINUTE_USD``, an
estimate the operator sets (Twilio's rates vary by country and number type).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from server.core.realtime_protocol import TOKEN_KINDS

PER_MILLION = 1_000_000
PRICES: dict[str, dict[str, float]] = {
    # USD per 1M tokens, by kind (the input kinds are uncached tokens)
    "gpt-realtime": {"input_audio": 32.0, "input_cached_audio": 0.40, "output_audio": 64.0,
                     "input_text": 4.0, "input_cached_text": 0.40, "output_text": 16.0},
    "gpt-realtime-mini": {"input_audio": 10.0, "input_cached_audio": 0.30, "output_audio": 20.0,
                          "input_text": 0.60, "input_cached_text": 0.06, "output_text": 2.40},
}
TRANSCRIPTION_PER_MINUTE: dict[str, float] = {"gpt-4o-mini-transcribe": 0.003, "gpt-4o-transcribe": 0.006,
                                              "whisper-1": 0.006}
DEFAULT_TWILIO_MINUTE_USD = 0.0125
"""Inbound voice plus a media stream, per minute, at US list prices: an estimate to set per deployment."""


@dataclass(frozen=True)
class CallCost:
    model_usd: float | None
    """The model's tokens; None when the model has no price here."""
    transcription_usd: float | None
    phone_usd: float
    abandoned_usd: float | None
    """Of ``model_usd``: the replies abandoned unheard."""

    @property
    def total_usd(self) -> float | None:
        if self.model_usd is None:
            return None
        return self.model_usd + (self.transcription_usd or 0.0) + self.phone_usd

    def as_dict(self) -> dict:
        return {"model_usd": _round(self.model_usd), "transcription_usd": _round(self.transcription_usd),
                "phone_usd": _round(self.phone_usd), "abandoned_usd": _round(self.abandoned_usd),
                "total_usd": _round(self.total_usd)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def parse_overrides(text: str) -> tuple[dict[str, dict[str, float]], list[str]]:
    """``MODEL_PRICES``: ``{"model": {"input_audio": 32, ...}}`` (every kind, USD per 1M tokens)."""
    if not text.strip():
        return {}, []
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return {}, [f"MODEL_PRICES is not JSON: {exc}"]
    kinds = set(TOKEN_KINDS)
    if not isinstance(raw, dict):
        return {}, ["MODEL_PRICES must be a JSON object of model -> prices"]
    problems, table = [], {}
    for model, prices in raw.items():
        if not isinstance(prices, dict) or set(prices) != kinds or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in prices.values()):
            problems.append(f"MODEL_PRICES[{model!r}] must give every kind ({', '.join(sorted(kinds))}) as a number "
                            "of USD per 1M tokens")
            continue
        table[str(model)] = {k: float(v) for k, v in prices.items()}
    return table, problems


def model_usd(tokens: dict, model: str, overrides: dict | None = None) -> float | None:
    prices = {**PRICES, **(overrides or {})}.get(model)
    if prices is None:
        return None
    return sum(tokens.get(kind, 0) * price for kind, price in prices.items()) / PER_MILLION


def call_cost(tokens: dict, abandoned: dict, model: str, transcription_model: str, transcription_s: float,
              call_s: float, twilio_minute_usd: float, overrides: dict | None = None) -> CallCost:
    per_minute = TRANSCRIPTION_PER_MINUTE.get(transcription_model)
    return CallCost(model_usd(tokens, model, overrides),
                    None if per_minute is None else transcription_s / 60 * per_minute,
                    call_s / 60 * twilio_minute_usd, model_usd(abandoned, model, overrides))


def usage_record(tokens: dict, abandoned: dict, transcription_s: float, transcription_tokens: int, model: str,
                 transcription_model: str, call_s: float, twilio_minute_usd: float,
                 overrides: dict | None = None, summary_tokens: dict | None = None) -> dict:
    """What the call's record keeps: its tokens by kind (the owner's summary's included, and
    apart), the abandoned replies' share, the transcription, and the cost split."""
    summary = {k: int(v) for k, v in (summary_tokens or {}).items()}
    tokens = {k: int(tokens.get(k, 0)) + summary.get(k, 0) for k in {**summary, **tokens}}
    cost = call_cost(tokens, abandoned, model, transcription_model, transcription_s, call_s, twilio_minute_usd,
                     overrides)
    return {"model": model, "tokens": tokens, "summary_tokens": summary,
            "abandoned_tokens": {k: int(v) for k, v in abandoned.items()},
            "transcription_model": transcription_model, "transcription_s": round(transcription_s, 2),
            "transcription_tokens": transcription_tokens, "call_s": round(call_s, 1), "cost": cost.as_dict()}
