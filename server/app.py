"""Flask app factory: the webhook, the media WebSocket, the health check and the read-only listings.

On start it opens the database (``DATABASE_URL``), creates the schema, loads the business profiles
into it and prepares the lead delivery worker (started by ``gunicorn.conf.py`` in the worker).

Served by ``gunicorn -k eventlet -w 1 -b 0.0.0.0:$PORT server.app:app`` (Procfile). ``app`` is
created on first access so importing this module never needs the environment.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time

from dotenv import load_dotenv
from flask import Flask, Response, jsonify, request
from flask_sock import Sock

from server import __version__, green
from server.adapters.twilio_rest import TwilioRest
from server.adapters.twiml import (MEDIA_WS_PATH, STREAM_ENDED_PATH, TRANSFER_DONE_PATH, after_stream,
                                   connect_stream, refuse, transfer_to_person, voicemail)
from server.business.directory import BusinessDirectory
from server.business.profiles import DEFAULT_FILE, ProfileError, load_profiles
from server.call.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from server.call.metrics import CallMetrics
from server.call.recording_keeper import DEFAULT_RECORDINGS_ROOT, RecordingKeeper
from server.call.records import CallRecords
from server.call.registry import CallRegistry
from server.call.stream_tokens import TOKEN_PARAM, issue
from server.delivery.outbox import OutboxWorker
from server.logs import configure, mask_phone
from server.media_ws_ai import MediaCall
from server.settings import Settings
from server.storage.db import DEFAULT_URL, Store
from server.storage.record_writer import DEFAULT_JOURNAL_DIR, RecordWriter
from server.tools import registry as tool_registry
from server.web.admin import bearer, register_admin, token_matches
from server.web.body_limit import BodyLimit
from server.web.twilio_auth import SignatureCheck, public_base_url

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    if settings is None:
        load_dotenv()
        settings = Settings.from_env(os.environ)
    configure(settings.log_level)
    app = Flask(__name__)
    app.wsgi_app = BodyLimit(app.wsgi_app, settings.max_request_body_bytes)   # 413 + close, before any read
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": 64 * 1024}
    sock = Sock(app)
    registry = CallRegistry(settings.twilio_auth_token.reveal())
    app.config["CALL_REGISTRY"] = registry          # gunicorn.conf.py flips registry.draining on SIGTERM
    signatures = SignatureCheck(settings)
    profiles = load_profiles(settings.businesses_file or DEFAULT_FILE)
    tool_problems = tool_registry.check([profiles.default, *profiles.businesses.values()])
    if tool_problems:
        raise ProfileError(tool_problems)             # a misspelt tool stops the start, not a call
    store = Store(settings.database_url or DEFAULT_URL, settings.database_connect_timeout_ms,
                  settings.database_statement_timeout_ms)
    store.upgrade_on_start()
    directory = BusinessDirectory(profiles, store.sync_businesses(profiles), settings.unknown_number_policy)
    rest = TwilioRest.from_settings(settings)       # None without TWILIO_ACCOUNT_SID
    outbox = (OutboxWorker(store, idle_poll_s=settings.outbox_idle_poll_ms / 1000,
                           send_sms=rest.send_sms if rest is not None else None)
              if settings.outbox_worker else None)
    app.config["OUTBOX_WORKER"] = outbox           # gunicorn.conf.py starts it in the worker
    journal = settings.records_journal_dir or str(DEFAULT_JOURNAL_DIR)
    if journal.lower() != "off":                  # one folder per database: a journal replays where it belongs
        journal = os.path.join(journal, hashlib.sha256(store.url.encode("utf-8")).hexdigest()[:12])
    writer = RecordWriter(store, None if journal.lower() == "off" else journal,
                          retry_max_s=settings.records_retry_max_ms / 1000,
                          on_delivery=outbox.wake if outbox is not None else None)
    app.config["RECORD_WRITER"] = writer           # gunicorn.conf.py starts its thread in the worker
    records = CallRecords(store, directory, outbox, writer)
    app.config["CALL_RECORDS"] = records
    register_admin(app, store, settings.admin_token, writer)
    metrics = CallMetrics(registry, store, writer)
    app.config["CALL_METRICS"] = metrics           # gunicorn.conf.py starts its flusher (several workers)
    keeper = RecordingKeeper(settings.recordings_dir or DEFAULT_RECORDINGS_ROOT, {
        RecordingKeeper.business_key(None if profile.is_default else store.business_for(profile.number)[0]):
            profile.recording_retention_days
        for profile in (*profiles.businesses.values(), profiles.default) if profile.recording})
    app.config["RECORDING_KEEPER"] = keeper if keeper.retention_days else None   # gunicorn.conf.py: the sweep

    @app.before_request
    def refuse_unsigned_media_upgrade():
        # Runs before flask-sock accepts the upgrade, so a bad signature is a plain 403.
        if request.path == MEDIA_WS_PATH and not signatures.websocket_ok(request):
            return Response("invalid signature", status=403)
        return None

    @app.post("/webhook/incoming_call")
    def incoming_call() -> Response:
        if not signatures.webhook_ok(request):
            return Response("invalid signature", status=403)
        form = request.form
        log.info("[WEBHOOK] incoming call %s from %s to %s", form.get("CallSid", "?"),
                 mask_phone(form.get("From", "?")), form.get("To", "?"))
        answering = records.answering(form.get("To", ""))
        if answering is None:
            log.info("[WEBHOOK] %s is not a number of any business - refusing (UNKNOWN_NUMBER_POLICY=refuse)",
                     form.get("To", "?"))
            return Response(refuse(settings.refusal_message), mimetype="text/xml")
        call_sid = form.get("CallSid", "")
        caller = mask_phone(form["From"]) if form.get("From") else ""
        if not registry.model_breaker.allow(green.monotonic_ms()):
            log.warning("[BREAKER] the model has failed call after call - %s hears the apology at once",
                        call_sid or "?")
            metrics.breaker_refused.inc()
            if call_sid:
                registry.record_end(call_sid, "model_unavailable", failed=True)
                records.call_answered(call_sid, answering, form.get("To", ""), caller)
                records.call_ended(call_sid, outcome="failed", hangup_reason="model_unavailable", turns=0,
                                   responses=0, barge_ins=0, latencies_ms=[], transcript=[], timeline=None)
            return Response(after_stream(settings.fallback_message), mimetype="text/xml")
        registry.record_answered(call_sid)
        if call_sid:
            records.call_answered(call_sid, answering, form.get("To", ""), caller)
        twiml = connect_stream(public_base_url(settings, request),
                               {"CallSid": call_sid, "From": form.get("From", ""), "To": form.get("To", ""),
                                TOKEN_PARAM: issue(registry.stream_secret, call_sid, int(time.time()))})
        return Response(twiml, mimetype="text/xml")

    @app.post(STREAM_ENDED_PATH)
    def stream_ended() -> Response:
        if not signatures.webhook_ok(request):
            return Response("invalid signature", status=403)
        call_sid = request.form.get("CallSid", "")
        action = records.after_stream(call_sid)          # the shared record: any instance can answer
        if action is None:                               # the database is unreachable: this process's memory
            action = "apologise" if registry.should_apologise(call_sid) else "hangup"
        answering = records.business_of(call_sid) if action == "transfer" else None
        if action == "transfer" and answering is not None and answering.profile.transfer_number:
            log.info("[WEBHOOK] stream ended for %s: transfer to a person", call_sid)
            return Response(transfer_to_person(public_base_url(settings, request), answering.profile,
                                               request.form.get("To", "") or answering.profile.number,
                                               request.form.get("From", "")), mimetype="text/xml")
        failed = action == "apologise"
        log.info("[WEBHOOK] stream ended for %s: %s", call_sid or "?",
                 "fallback message" if failed else "hang up")
        return Response(after_stream(settings.fallback_message if failed else None), mimetype="text/xml")

    @app.post(TRANSFER_DONE_PATH)
    def transfer_done() -> Response:
        """Twilio's ``<Dial>`` action: the person answered (hang up after their talk) or not (back to
        the agent on a new stream, or the voicemail, as the business chose)."""
        if not signatures.webhook_ok(request):
            return Response("invalid signature", status=403)
        form = request.form
        call_sid, status = form.get("CallSid", ""), form.get("DialCallStatus", "")
        records.transfer(call_sid, status=status or "unknown")
        log.info("[TRANSFER] %s: the person's line said %s", call_sid or "?", status or "?")
        if status == "completed":
            return Response(after_stream(None), mimetype="text/xml")
        answering = records.business_of(call_sid)
        if answering is not None and answering.profile.transfer_fallback == "voicemail":
            return Response(voicemail(), mimetype="text/xml")
        twiml = connect_stream(public_base_url(settings, request),
                               {"CallSid": call_sid, "From": form.get("From", ""), "To": form.get("To", ""),
                                "Transfer": "unanswered",
                                TOKEN_PARAM: issue(registry.stream_secret, call_sid, int(time.time()))})
        return Response(twiml, mimetype="text/xml")

    @sock.route(MEDIA_WS_PATH)
    def twilio_media(ws) -> None:
        MediaCall(ws, settings, registry, records, metrics, rest, public_base_url(settings, request), keeper).run()

    @app.get("/metrics")
    def prometheus_metrics():
        if settings.metrics_token and not token_matches(bearer(request), settings.metrics_token):
            return Response("a valid metrics token is required\n", status=401,
                            headers={"WWW-Authenticate": 'Bearer realm="prosaas-metrics"'})
        return Response(metrics.exposition(), mimetype=None, content_type=METRICS_CONTENT_TYPE)

    @app.get("/healthz")
    def healthz():
        # 503 while draining: a load balancer's health check takes this instance out of rotation
        health = dict(status="draining" if registry.draining else "ok", version=__version__,
                      active_calls=registry.active, calls_total=registry.total, green_threads=green.live_count(),
                      records_pending=writer.pending)
        if request.args.get("perf"):        # histograms for scripts/bench_call.py, counts per ms
            health["perf"] = {"tx_lateness_ms": registry.tx_lateness.counts,
                              "eou_to_create_ms": registry.eou_to_create.counts}
            health["records"] = {"pending": writer.pending, "oldest_pending_s": round(writer.oldest_pending_s, 1),
                                 "write_failures": writer.failures, "stored": writer.stored, "dead": writer.dead,
                                 "refused": writer.refused}
        return jsonify(**health), 503 if registry.draining else 200

    log.info("ProSaaS voice agent %s ready: realtime=%s model=%s database=%s businesses=%d (%s)", __version__,
             settings.openai_realtime_url, settings.openai_realtime_model,
             store.engine.url.render_as_string(hide_password=True), len(profiles.businesses), profiles.source)
    return app


_app: Flask | None = None


def __getattr__(name: str):
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
