"""Validate client events against the ``openai`` package's GA Realtime types, strictly.

The SDK models accept unknown keys silently (``extra="allow"``), so besides the tagged-union
validation we walk the parsed model and report every key the types do not define.
"""
from __future__ import annotations

from typing import Annotated, Any, Union, get_args

from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

_MEMBERS = get_args(get_args(RealtimeClientEvent)[0])
_GA_CLIENT = TypeAdapter(Annotated[Union[_MEMBERS], Field(discriminator="type")])  # type: ignore[valid-type]
CLIENT_EVENT_TYPES = frozenset(get_args(m.model_fields["type"].annotation)[0] for m in _MEMBERS)


def _unknown_keys(value: Any, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, BaseModel):
        for key in (value.model_extra or {}):
            found.append(f"{path}.{key}" if path else key)
        for name in type(value).model_fields:
            found += _unknown_keys(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found += _unknown_keys(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            found += _unknown_keys(v, f"{path}.{k}")
    return found


def validate_client_event(obj: Any) -> list[str]:
    """Problems with one decoded client event; empty when it is a valid GA event."""
    try:
        model = _GA_CLIENT.validate_python(obj)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]]
    return [f"unknown key {key}" for key in _unknown_keys(model, "")]


_SERVER_MEMBERS = get_args(get_args(RealtimeServerEvent)[0])
_GA_SERVER = TypeAdapter(Annotated[Union[_SERVER_MEMBERS], Field(discriminator="type")])  # type: ignore[valid-type]


def validate_server_event(obj: Any) -> list[str]:
    """Problems with one server event the simulator emits (the live server's documented extras
    on the session object are allowed)."""
    try:
        model = _GA_SERVER.validate_python(obj)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]]
    allowed = {"session.object", "session.id", "session.expires_at"}
    return [f"unknown key {key}" for key in _unknown_keys(model, "") if key not in allowed]
