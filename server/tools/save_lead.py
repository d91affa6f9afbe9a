"""``save_lead``: the caller's request for the business (service, city, name, callback number).

Every business has it. The validation and the lead itself are ``server.leads.capture``'s; this
module is the tool around it: the spec the model sees, the sentence in the instructions, and the
reply (the lead's answer, a ``LeadUpdated`` effect so the core stores it and closes the call once
it is complete, and the ``lead_tool_answer`` line).
"""
from __future__ import annotations

from server.core.events import note
from server.tools import LeadUpdated, ToolBase, ToolContext, ToolDef, ToolReply, reply_json

NAME = "save_lead"
SPEC = {
    "type": "function",
    "name": NAME,
    "description": ("Save the caller's request for the business. Call it once the caller has confirmed the "
                    "service and the city; call it again to correct or add a detail. The answer says "
                    "'saved', or 'incomplete' with what to ask the caller for."),
    "parameters": {
        "type": "object",
        "properties": {
            "service": {"type": "string", "description": "The service the caller needs, in the caller's words."},
            "city": {"type": "string", "description": "The city or town where the service is needed."},
            "name": {"type": "string", "description": "The caller's name, if they gave it."},
            "phone": {"type": "string", "description": "A callback number, only if different from the "
                                                       "number the caller is calling from."},
            "notes": {"type": "string", "description": "Anything else useful: urgency, preferred time, details."},
        },
        "required": ["service", "city"],
    },
}
INSTRUCTIONS = (f"When the caller has confirmed the service and the city, call the {NAME} tool with "
                "what you know (the caller's phone number is known; ask for another one only if the caller "
                f"wants to be called back elsewhere). If {NAME} answers 'incomplete', ask the caller for "
                "what it lists. If it answers 'saved', follow its 'next' instruction.")


class SaveLead(ToolBase):
    name = NAME
    spec = SPEC

    def call(self, arguments: str, ctx: ToolContext) -> ToolReply:
        if ctx.lead is None:
            return ToolReply(reply_json({"status": "error", "error": "no tools are available in this call"}),
                             notes=(note('WARNING', 'tool_without_lead', name=NAME),))
        answer = ctx.lead.on_tool_call(arguments)
        lead = ctx.lead.snapshot()
        return ToolReply(answer.output,
                         effects=(LeadUpdated(answer.status, answer.changed, answer.became_complete, answer.missing),),
                         notes=(note('INFO', 'lead_tool_answer', name=NAME, status=answer.status,
                                     service=lead.service, city=lead.city, city_served=lead.city_served,
                                     missing=list(answer.missing)),))


TOOL = ToolDef(NAME, make=lambda profile, options, call: SaveLead(), instructions=INSTRUCTIONS, default=True, order=0)
