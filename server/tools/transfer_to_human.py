"""``transfer_to_human``: the caller asks for a person; the call is put through after the AI's line.

A business with a ``transfer_number`` has it. The tool only says what the caller wants
(``WantsPerson``, with a short reason); whether a person can take the call now is the call's
(``ToolContext.person_available``: the number, the hours, a call back from an unanswered
transfer), and the answer tells the model which line to say.
"""
from __future__ import annotations

from server.tools import ToolBase, ToolContext, ToolDef, ToolReply, WantsPerson, arguments_of

NAME = "transfer_to_human"
SPEC = {
    "type": "function",
    "name": NAME,
    "description": ("Transfer the call to a person at the business, when the caller asks to speak with a person "
                    "or needs something you may not handle. Its answer says whether a person can take the call now."),
    "parameters": {"type": "object", "properties": {
        "reason": {"type": "string", "description": "Why, in a few words (e.g. 'asked for a person')."}},
        "required": ["reason"]},
}
ANSWERS = {
    True: '{"status":"transferring","next":"Tell the caller in one short sentence that you are transferring '
          'them to a person now. Say nothing else."}',
    False: '{"status":"unavailable","next":"No one can take the call right now. Say so briefly, offer that '
           'someone will call back, and take the caller\'s details."}',
}
INSTRUCTIONS = (f"If the caller asks to speak with a person, or asks for something you may not handle, call "
                f"the {NAME} tool and follow its answer.")
MAX_REASON = 80


def reason_of(arguments: str) -> str:
    """The ``reason`` argument (the model's JSON), short, or a default."""
    reason = (arguments_of(arguments) or {}).get("reason")
    return str(reason)[:MAX_REASON] if reason else "caller asked"


class TransferToHuman(ToolBase):
    name = NAME
    spec = SPEC

    def call(self, arguments: str, ctx: ToolContext) -> ToolReply:
        return ToolReply(ANSWERS[ctx.person_available], effects=(WantsPerson(reason_of(arguments)),))


TOOL = ToolDef(NAME, make=lambda profile, options, call: TransferToHuman(), instructions=INSTRUCTIONS, default=True,
               offered=lambda profile: bool(profile.transfer_number), order=10)
