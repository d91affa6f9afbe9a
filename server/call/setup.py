"""How one call is set up for the business that answers it: a pure function of the business's
profile, the stream's parameters, the server's settings and the time of the call.

The per-call handler asks ``plan_call`` once, when Twilio's ``start`` arrives, and builds the
model session and the call core from the answer. What it decides:

* the model's instructions, voice and language; after hours (``profile.is_open``) the
  after-hours instructions and greeting;
* the tools (``server.tools.registry``): ``save_lead`` always, ``transfer_to_human`` when the
  business has a transfer number, and the ones its profile lists; each adds its own sentence to the
  instructions and its spec to the session;
* whether a person can take the call now (``profile.transfer_allowed``) and the keypad's actions;
* a call coming back from an unanswered transfer (stream parameter ``Transfer=unanswered``) is
  greeted with "no one is available" and is not transferred again.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from server.business.profiles import BusinessProfile, session_instructions
from server.core.call_core import CallCore
from server.leads.capture import LeadCapture
from server.settings import Settings
from server.tools import CallFacts, registry

UNANSWERED_TRANSFER_GREETING = (
    "The caller was being transferred to a person, who could not answer. Say briefly, in the caller's language, "
    "that no one is available right now, and offer to take their details so that someone calls back.")
RECORDING_NOTICE = "Also say, in one short phrase, that the call is recorded."


@dataclass(frozen=True)
class CallPlan:
    instructions: str
    voice: str
    language: str
    tools: list
    """The Realtime specs of the call's tools (for ``session.update``)."""
    core: CallCore
    is_open: bool
    transfer_allowed: bool
    model: str
    """The Realtime model of the call: the business's ``model``, else ``OPENAI_REALTIME_MODEL``."""


def plan_call(settings: Settings, profile: BusinessProfile, params: dict, now_utc: datetime,
              call_sid: str = "") -> CallPlan:
    caller = str(params.get("From", ""))
    is_open = profile.is_open(now_utc)
    back_from_transfer = params.get("Transfer") == "unanswered"      # <Dial> unanswered: a new stream
    instructions = session_instructions(profile)
    if not is_open:
        instructions = profile.after_hours_instructions + "\n" + instructions
    tools, tool_instructions = registry.tools_for(profile, CallFacts(call_sid, caller, settings.business_time))
    for sentence in tool_instructions:
        instructions += "\n" + sentence
    turn = settings.turn
    if profile.silence_timeout_ms is not None:
        turn = replace(turn, silence_timeout_ms=profile.silence_timeout_ms)
    if profile.max_silence_warnings is not None:
        turn = replace(turn, max_silence_warnings=profile.max_silence_warnings)
    prompts = dict(settings.prompts)
    if profile.greeting:
        prompts["greeting"] = profile.greeting
    if not is_open and profile.after_hours_greeting:
        prompts["greeting"] = profile.after_hours_greeting
    if back_from_transfer:
        prompts["greeting"] = UNANSWERED_TRANSFER_GREETING
    if profile.recording:
        prompts["greeting"] = prompts.get("greeting", "") + " " + RECORDING_NOTICE
    transfer_allowed = profile.transfer_allowed(now_utc) and not back_from_transfer
    lead = LeadCapture(profile.services, profile.cities, profile.required_fields, caller_phone=caller or None)
    core = CallCore(turn, prompts, lead=lead, session_renew_ms=settings.openai_session_renew_ms,
                    transfer_allowed=transfer_allowed, keypad=profile.keypad, tools=tools)
    return CallPlan(instructions, profile.voice or settings.openai_voice, profile.language,
                    [tool.spec for tool in tools], core, is_open,
                    transfer_allowed, profile.model or settings.openai_realtime_model)
