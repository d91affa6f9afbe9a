"""X-Twilio-Signature checks for the voice webhook and the media WebSocket upgrade.

Twilio signs the URL it requested as it saw it: behind a proxy that is the *public* URL, so it is
rebuilt from ``PUBLIC_BASE_URL`` (or ``X-Forwarded-Proto``/``X-Forwarded-Host`` when unset). The
webhook is signed over URL + sorted form parameters; the WebSocket upgrade over the exact
``wss://host/path`` with no parameters (``twilio`` validates both with and without the port).
"""
from __future__ import annotations

import logging

from flask import Request
from twilio.request_validator import RequestValidator

from server.settings import Settings
from server.adapters.twiml import ws_base

log = logging.getLogger(__name__)


def public_base_url(settings: Settings, request: Request) -> str:
    if settings.public_base_url:
        return settings.public_base_url
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{proto}://{host}"


class SignatureCheck:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = settings.twilio_signature_validation
        self._validator = RequestValidator(settings.twilio_auth_token.reveal()) if self.enabled else None
        if not self.enabled:
            log.warning("⚠️ [SECURITY] TWILIO_SIGNATURE_VALIDATION=off: requests are NOT checked to come from "
                        "Twilio. Use this for local development only, never in production.")

    def _ok(self, url: str, params, request: Request, what: str) -> bool:
        if not self.enabled:
            return True
        signature = request.headers.get("X-Twilio-Signature", "")
        if signature and self._validator.validate(url, params, signature):
            return True
        log.warning("[SECURITY] rejected %s from %s: %s X-Twilio-Signature for %s", what,
                    request.headers.get("X-Forwarded-For", request.remote_addr),
                    "invalid" if signature else "missing", url)
        return False

    def webhook_ok(self, request: Request) -> bool:
        query = request.query_string.decode("latin-1")
        url = public_base_url(self.settings, request) + request.path + (f"?{query}" if query else "")
        return self._ok(url, request.form, request, "webhook")

    def websocket_ok(self, request: Request) -> bool:
        try:
            url = ws_base(public_base_url(self.settings, request)) + request.path
        except ValueError:            # a forwarded scheme that is neither http nor https
            url = public_base_url(self.settings, request) + request.path
        return self._ok(url, {}, request, "media WebSocket upgrade")
