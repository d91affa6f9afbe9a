"""The tools of one call: the protocol a tool implements, and the desk that runs tool calls.

Theory of operation. The model calls a tool (``response.function_call_arguments.done``); the desk
finds it among this call's tools and asks it for a ``ToolReply``: the answer for the model (a JSON
string), or a request for I/O (a calendar, a database, an HTTP API) that the shell runs off the
call's green thread, for at most ``io_timeout_ms``, through one generic verb (``RunToolIo``) and
one generic fact (``ToolIoDone``); the tool then turns the result (or the failure) into its answer
(``answer_io``). Either way a reply may carry effects the core carries out (``LeadUpdated``,
``WantsPerson``) and notes to log. Answers go back to the model once the response that called
the tools is done and every answer of that response is in (``ready``); the follow-up response is
the core's, through the one guarded trigger.

The protocol lives here, in the core, because the core is what needs it: tools (``server/tools``)
import it and the core never imports a tool; a call gets its tools from the registry of its
business (``server.tools.registry``), so a new tool is a module there and nothing here changes.
Everything a tool's pure side sees is in ``ToolContext``; ``run_io`` is its only impure method and
only the shell calls it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Mapping, Protocol, Sequence

from server.core import realtime_protocol as rt
from server.core.events import CoreAction, LeadChanged, RunToolIo, SendToolOutput, note
from server.leads.capture import LeadCapture

ABANDONED = "abandoned"             # a parked response whose follow-up the caller talked over
MAX_TOOL_CHAIN = 3                  # tool answers in a row without the caller speaking
DEFAULT_IO_TIMEOUT_MS = 3000
MAX_IO_TIMEOUT_MS = 6000            # under the no-audio watchdog: a turn waiting on I/O never looks dead


@dataclass(frozen=True)
class ToolContext:
    """What a tool may read of the call when it answers."""
    lead: LeadCapture | None
    """The call's lead (``save_lead`` fills it); None when the call captures none."""
    person_available: bool
    """A person can take the call now: a transfer asked for now will happen."""


@dataclass(frozen=True)
class LeadUpdated:
    """Effect: the lead was validated again (``status``: saved, incomplete or error)."""
    status: str
    changed: bool
    became_complete: bool
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class WantsPerson:
    """Effect: the caller asked for a person (transferred after the AI's line where allowed)."""
    reason: str


Effect = LeadUpdated | WantsPerson


@dataclass(frozen=True)
class ToolReply:
    output: str | None = None
    """The ``function_call_output`` for the model (JSON text); None while ``io`` runs."""
    io: object = None
    """A request for ``run_io``, run by the shell off the call's thread; then ``answer_io``."""
    io_timeout_ms: int = DEFAULT_IO_TIMEOUT_MS
    effects: tuple[Effect, ...] = ()
    notes: tuple = ()


class Tool(Protocol):
    name: str
    spec: dict
    """The Realtime function definition (``type``, ``name``, ``description``, ``parameters``)."""

    def call(self, arguments: str, ctx: ToolContext) -> ToolReply: ...

    def answer_io(self, request: object, result: object, error: str | None, ctx: ToolContext) -> ToolReply:
        """The I/O asked for finished: ``result``, or ``error`` (``timeout``, or what failed)."""
        ...

    def run_io(self, request: object) -> object:
        """Impure: run by the shell, off the call's thread, under a deadline."""
        ...


@dataclass
class _Answer:
    call_id: str
    tool: str
    output: str | None = None


@dataclass
class _Waiting:
    response_id: str
    answer: _Answer
    request: object


@dataclass
class ToolDesk:
    tools: Mapping[str, Tool]
    lead: LeadCapture | None = None
    max_chain: int = MAX_TOOL_CHAIN
    chain: int = 0
    """Tool answers in a row without the caller speaking."""
    follow_up_owed: bool = False
    answer_with_turn: bool = False
    """Answers went out while the caller was talking: the caller's own turn follows them up."""
    complete_lead_written: bool = False
    """A complete lead was handed to the shell to store and deliver: the call's end need not again."""
    _answers: dict[str, list[_Answer]] = field(default_factory=dict)
    _waiting: dict[int, _Waiting] = field(default_factory=dict)
    _parked: dict[str, str] = field(default_factory=dict)
    """Responses done while an answer of theirs waited for I/O -> their status."""
    _tickets: int = 0

    @classmethod
    def of(cls, tools: Sequence[Tool], lead: LeadCapture | None) -> "ToolDesk":
        return cls({tool.name: tool for tool in tools}, lead)

    def on_call(self, e: rt.FunctionCallDone, ctx: ToolContext, out: list[CoreAction]) -> tuple[Effect, ...]:
        """A tool call of response ``e.response_id``: its answer now, or its I/O asked for."""
        answer = _Answer(e.call_id, e.name)
        self._answers.setdefault(e.response_id, []).append(answer)
        tool = self.tools.get(e.name)
        if tool is None:
            answer.output = f'{{"status":"error","error":"{e.name} is not a tool of this call"}}'
            out.append(note('WARNING', 'tool_unknown', name=e.name))
            return ()
        return self._take(tool, tool.call(e.arguments, ctx), e.response_id, answer, out)

    def on_io_done(self, ticket: int, result: object, error: str | None, ctx: ToolContext,
                   out: list[CoreAction]) -> tuple[str | None, tuple[Effect, ...]]:
        """(the response the answer belongs to, or None for an unknown ticket; the reply's effects)."""
        waiting = self._waiting.pop(ticket, None)
        if waiting is None:
            return None, ()              # its session died (``clear``): the new one never asked
        tool = self.tools[waiting.answer.tool]
        out.append(note('INFO', 'tool_io_done', name=tool.name, ticket=ticket, error=error or 'none'))
        effects = self._take(tool, tool.answer_io(waiting.request, result, error, ctx), waiting.response_id,
                             waiting.answer, out)
        return waiting.response_id, effects

    def _take(self, tool: Tool, reply: ToolReply, response_id: str, answer: _Answer,
              out: list[CoreAction]) -> tuple[Effect, ...]:
        out.extend(reply.notes)
        if reply.output is not None:
            answer.output = reply.output
        elif reply.io is not None:
            self._tickets += 1
            self._waiting[self._tickets] = _Waiting(response_id, answer, reply.io)
            timeout_ms = max(1, min(reply.io_timeout_ms, MAX_IO_TIMEOUT_MS))
            out.append(RunToolIo(self._tickets, tool.name, reply.io, timeout_ms, partial(tool.run_io, reply.io)))
            out.append(note('INFO', 'tool_io', name=tool.name, ticket=self._tickets, timeout_ms=timeout_ms))
        else:
            answer.output = '{"status":"error","error":"the tool gave no answer"}'
        return reply.effects

    def waiting_on(self, response_id: str) -> bool:
        """Some answer of this response waits for its I/O."""
        return any(a.output is None for a in self._answers.get(response_id, ()))

    def park(self, response_id: str, status: str) -> None:
        """The response is done but an answer of it waits for I/O: its answers go when it is in."""
        self._parked[response_id] = status

    def unpark(self, response_id: str, on_answer, caller_talking: bool, out: list[CoreAction]) -> str | None:
        """The parked response's status once none of its answers waits any more, else None. When
        the caller talked over its I/O and is still talking, its answers go here with no follow-up
        (their turn's answer sees them: ``answer_with_turn``); once their turn is over, ABANDONED
        comes back: the answers want a follow-up after the turn's answer."""
        if response_id not in self._parked or self.waiting_on(response_id):
            return None
        status = self._parked.pop(response_id)
        if status != ABANDONED or not caller_talking:
            return status
        self.send_answers(response_id, on_answer, out)
        self.answer_with_turn = True
        out.append(note('INFO', 'tool_answers_unfollowed', response_id=response_id))
        return None

    def abandon_parked(self) -> None:
        """The caller went on talking while some I/O ran: when it is in, its answers go to the model
        without a follow-up (the caller's own turn gets the answer that sees them)."""
        for response_id in self._parked:
            self._parked[response_id] = ABANDONED

    def has_answers(self, response_id: str) -> bool:
        return bool(self._answers.get(response_id))

    def lead_updated(self, effect: LeadUpdated, asked_for_person: bool, out: list[CoreAction]) -> bool:
        """The lead changed: store it (and deliver it once complete). True when it became complete."""
        if self.lead is None:
            return False
        if effect.changed:
            out.append(LeadChanged(self.lead.snapshot(), deliver=self.lead.complete, asked_for_person=asked_for_person))
            self.complete_lead_written = self.lead.complete
        return effect.became_complete

    def send_answers(self, response_id: str, on_answer, out: list[CoreAction]) -> None:
        """Every answer of the response goes to the model (``on_answer(tool, output)`` keeps it)."""
        for answer in self._answers.pop(response_id, []):
            out.append(SendToolOutput(answer.call_id, answer.output))
            on_answer(answer.tool, answer.output)

    def chain_allows(self, out: list[CoreAction]) -> bool:
        """One more tool answer without the caller speaking: True while under ``max_chain``."""
        self.chain += 1
        if self.chain > self.max_chain:
            out.append(note('WARNING', 'tool_chain_limit', tool_chain=self.chain))
            return False
        return True

    def clear(self) -> None:
        """The model session died: its tool calls died with it (the lead itself is kept)."""
        self._answers.clear()
        self._waiting.clear()
        self._parked.clear()
        self.follow_up_owed = self.answer_with_turn = False

    @property
    def lead_complete(self) -> bool:
        return self.lead is not None and self.lead.complete

    @property
    def owes_follow_up(self) -> bool:
        """A response to the tools' answers is still to come: the call does not end before it."""
        return self.follow_up_owed or self.answer_with_turn
