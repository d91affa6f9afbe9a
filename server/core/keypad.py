"""The caller's keypad (pure): a digit is an action, never speech.

The business maps digits to ``person`` (a transfer where allowed, else "no one can take the call
now") or ``repeat``; the VAD, the silence clock and the turn count never see a key. ``press`` says
which prompt the AI answers with (None: the key means nothing here); the core asks for it when the
call is idle (else the AI's current line plays first, and a transfer follows it).
"""
from __future__ import annotations

from typing import Mapping

from server.core.ending import TRANSFERRED, CallEnding
from server.core.events import CoreAction, note

KEYPAD_PROMPTS = {
    "transfer": "The caller asked for a person. Say in one short sentence, in the caller's language, that you "
                "are transferring them now. Say nothing else.",
    "transfer_unavailable": "The caller asked for a person, but no one can take the call right now. Say so "
                            "briefly, offer that someone will call back, and take the caller's details.",
    "repeat": "The caller asked you to repeat. Repeat your last answer briefly.",
}


class Keypad:
    def __init__(self, actions: Mapping[str, str] | None) -> None:
        self.actions = dict(actions or {})

    def press(self, digit: str, ending: CallEnding, out: list[CoreAction]) -> str | None:
        action = self.actions.get(digit, "none")
        out.append(note('INFO', 'keypad', digit=digit, action=action))
        if action == "person" and ending.after_playout != TRANSFERRED:
            return "transfer" if ending.ask_for_person(f"keypad {digit}", out) else "transfer_unavailable"
        return "repeat" if action == "repeat" else None
