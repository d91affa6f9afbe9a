"""The admin pages and listings behind ``ADMIN_TOKEN``: sign-in, calls, one call and its timeline.

Routes (all off, 404, without ``ADMIN_TOKEN``, so a fresh deployment never exposes leads):

- ``GET /admin/login`` the sign-in form; ``POST /admin/login`` checks the token (constant time)
  and sets the signed session cookie (``server/web/admin_session.py``: ``HttpOnly``,
  ``SameSite=Strict``, ``Path=/admin``, 12 h, ``Secure`` when the request came over https, also
  through a proxy's ``X-Forwarded-Proto``); a wrong token gets the form again with 401.
  ``POST /admin/logout`` clears the cookie.
- ``GET /admin`` calls (``?business=<id>&outcome=&page=``, 25 a page) and the recent leads;
  ``GET /admin/calls/<call_sid>`` one call: figures, timeline picture, transcript, lead and its
  deliveries; ``GET /admin/calls/<call_sid>/timeline.svg`` the picture (``server/web/timeline_svg.py``).
- ``GET /admin/calls`` (the same filters, ``?limit=`` a page of at most 500, ``?page=``) and
  ``GET /admin/leads`` answer JSON for scripts.

Every route also takes ``Authorization: Bearer <token>`` (scripts). A token in the URL
(``?token=``) is refused with 400 and never checked: URLs land in access logs and browser
history. Without credentials the HTML pages redirect to the sign-in form and the rest answer 401.
Wrong tokens count against the client's budget of failures (``FailureThrottle``): past it, 429.
Leads carry the callback phone in full: that is what the business needs; every admin response is
``Cache-Control: no-store``.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request, send_file

from server.web.admin_pages import (KNOWN_OUTCOMES, bad_request_page, call_page, costs_page, index_page, login_page,
                                   not_found_page)
from server.web.admin_session import COOKIE_NAME, SESSION_TTL_S, FailureThrottle, issue, session_key, tokens_equal, valid
from server.settings import Secret
from server.storage.db import Store
from server.storage.models import utcnow
from server.web.timeline_svg import render

log = logging.getLogger(__name__)

MAX_LIMIT = 500
PAGE_SIZE = 25
TOKEN_IN_URL = ("the admin token never goes in a URL (it would land in access logs and browser history): "
                "sign in at /admin/login, or send it in an 'Authorization: Bearer <token>' header\n")
HTML_CSP = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"


def bearer(req) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None without one."""
    scheme, _, credentials = req.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def token_matches(given: str | None, token: Secret) -> bool:
    return tokens_equal(given, token.reveal())


def _is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def _over_https() -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def _safe_next(path: str | None) -> str:
    """Where to go after signing in: an admin page of this site only (never another host)."""
    if path and _is_admin_path(path.split("?", 1)[0]) and not any(c in path for c in ("\\", "//", "\r", "\n")):
        return path
    return "/admin"


MAX_QUERY_INT = 1_000_000_000
"""No page, business id or limit is larger: a bigger number is a typing slip or a probe (it would
overflow the database's integers), answered 400."""


def _int_arg(name: str, minimum: int, maximum: int = MAX_QUERY_INT) -> int | None:
    """An integer query parameter, None when absent or empty; ValueError when unreadable or outside
    ``minimum..maximum``. Only ASCII digits with an optional sign: no ``1_000``, no other scripts' digits."""
    raw = request.args.get(name, "").strip()
    if raw == "":
        return None
    digits = raw[1:] if raw[:1] in "+-" else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12:
        raise ValueError(name)
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ValueError(name)
    return value


def register_admin(app: Flask, store: Store, token: Secret, writer=None) -> None:
    """``writer``: the worker's ``RecordWriter`` (the calls page says what it holds for the database)."""
    key = session_key(token.reveal()) if token else b""
    throttle = FailureThrottle()

    def client() -> str:
        return request.remote_addr or "?"

    def now_ms() -> int:
        return int(time.monotonic() * 1000)

    def too_many(wait_ms: int, html: bool) -> Response:
        minutes = -(-wait_ms // 60_000)
        message = f"too many failed sign-ins from this address: try again in {minutes} min"
        body = login_page(message) if html else message + "\n"
        return Response(body, status=429, mimetype="text/html" if html else "text/plain",
                        headers={"Retry-After": str(-(-wait_ms // 1000))})

    @app.before_request
    def admin_gate():
        if not _is_admin_path(request.path):
            return None
        if not token:
            return Response("admin pages are off: set ADMIN_TOKEN to enable them\n", status=404)
        if "token" in request.args:
            return Response(TOKEN_IN_URL, status=400, mimetype="text/plain")
        return None

    @app.after_request
    def admin_headers(resp: Response) -> Response:
        if _is_admin_path(request.path):
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["X-Content-Type-Options"] = "nosniff"
            resp.headers["Referrer-Policy"] = "no-referrer"
            resp.headers.setdefault("Content-Security-Policy", HTML_CSP)
            resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    def denied(html: bool) -> Response | None:
        """None when the request may see admin data (a good bearer token or session cookie)."""
        if "Authorization" in request.headers:           # a script: its header decides, no redirect
            wait_ms = throttle.retry_after_ms(client(), now_ms())
            if wait_ms:
                return too_many(wait_ms, html=False)
            if token_matches(bearer(request), token):
                return None
            throttle.failed(client(), now_ms())
            log.warning("[ADMIN] wrong bearer token from %s on %s", client(), request.path)
            return Response("a valid admin token is required\n", status=401, mimetype="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="prosaas-admin"'})
        if valid(key, request.cookies.get(COOKIE_NAME), int(time.time())):
            return None
        if html:
            target = request.full_path.rstrip("?") if request.query_string else request.path
            return redirect("/admin/login?" + urlencode({"next": target}), code=303)
        return Response("sign in at /admin/login, or send an 'Authorization: Bearer <token>' header\n",
                        status=401, mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="prosaas-admin"'})

    @app.get("/admin/login")
    def admin_login_form():
        return Response(login_page(next_path=_safe_next(request.args.get("next"))), mimetype="text/html")

    @app.post("/admin/login")
    def admin_login():
        next_path = _safe_next(request.form.get("next"))
        wait_ms = throttle.retry_after_ms(client(), now_ms())
        if wait_ms:
            return too_many(wait_ms, html=True)
        if not token_matches(request.form.get("token", ""), token):
            throttle.failed(client(), now_ms())
            log.warning("[ADMIN] failed sign-in from %s", client())
            return Response(login_page("That is not the admin token.", next_path), status=401, mimetype="text/html")
        log.info("[ADMIN] signed in from %s", client())
        resp = redirect(next_path, code=303)
        resp.set_cookie(COOKIE_NAME, issue(key, int(time.time())), max_age=SESSION_TTL_S, path="/admin",
                        secure=_over_https(), httponly=True, samesite="Strict")
        return resp

    @app.post("/admin/logout")
    def admin_logout():
        resp = redirect("/admin/login", code=303)
        resp.delete_cookie(COOKIE_NAME, path="/admin", secure=_over_https(), httponly=True, samesite="Strict")
        return resp

    def filters() -> tuple[int | None, str | None, int]:
        """business id, outcome, page (from 1); ValueError naming a bad parameter."""
        business_id, page = _int_arg("business", 1), _int_arg("page", 1)
        return business_id, request.args.get("outcome", "").strip() or None, page or 1

    def limit() -> int:
        """``limit`` (1..MAX_LIMIT, default 50); ValueError when it is not a number from 1."""
        value = _int_arg("limit", 1)
        return 50 if value is None else min(MAX_LIMIT, value)

    def bad_number(html: bool) -> Response:
        message = "business, page and limit must be whole numbers from 1 (at most 1000000000)"
        if html:
            return Response(bad_request_page(message), status=400, mimetype="text/html")
        return Response(message + "\n", status=400, mimetype="text/plain")

    @app.get("/admin/calls")
    def admin_calls():
        refusal = denied(html=False)
        if refusal is not None:
            return refusal
        try:
            business_id, outcome, page = filters()
            size = limit()
        except ValueError:
            return bad_number(html=False)
        calls, total = store.list_calls(business_id, outcome, (page - 1) * size, size)
        return jsonify(calls=calls, total=total, page=page, page_size=size)

    @app.get("/admin/costs")
    def admin_costs():
        """Per business and per day: calls, minutes and cost (``?days=30``, at most 366); a page for
        a browser (``Accept: text/html`` first), JSON for anything else."""
        html = request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]
        refusal = denied(html=html)
        if refusal is not None:
            return refusal
        try:
            days = int(request.args.get("days", "30"))
        except ValueError:
            return bad_number(html=html)
        days = max(1, min(days, 366))
        since = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
        costs = store.costs_by_day(since)
        if html:
            return Response(costs_page(days, costs), mimetype="text/html")
        return jsonify(days=days, costs=costs)

    @app.get("/admin/leads")
    def admin_leads():
        refusal = denied(html=False)
        if refusal is not None:
            return refusal
        try:
            size = limit()
        except ValueError:
            return bad_number(html=False)
        return jsonify(leads=store.recent_leads(size), outbox=store.outbox_counts())

    @app.get("/admin")
    def admin_page():
        refusal = denied(html=True)
        if refusal is not None:
            return refusal
        try:
            business_id, outcome, page = filters()
        except ValueError:
            return bad_number(html=True)
        calls, total = store.list_calls(business_id, outcome, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        last_page = max(1, -(-total // PAGE_SIZE))
        if page > last_page:                    # past the end (the list shrank, or a typed URL)
            page = last_page
            calls, _ = store.list_calls(business_id, outcome, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        outcomes = sorted(set(KNOWN_OUTCOMES) | set(store.call_outcomes()))
        waiting = (writer.pending, writer.oldest_pending_s) if writer is not None else (0, 0.0)
        html = index_page(calls, total, page, PAGE_SIZE, business_id, outcome, store.businesses(), outcomes,
                          store.recent_leads(PAGE_SIZE), waiting)
        return Response(html, mimetype="text/html")

    @app.get("/admin/calls/<call_sid>")
    def admin_call(call_sid: str):
        refusal = denied(html=True)
        if refusal is not None:
            return refusal
        detail = store.call_detail(call_sid)
        if detail is None:
            return Response(not_found_page(f"No call {call_sid} is stored."), status=404, mimetype="text/html")
        return Response(call_page(detail), mimetype="text/html")

    @app.get("/admin/calls/<call_sid>/recording.wav")
    def admin_call_recording(call_sid: str):
        """The call's recording (businesses that record), while its retention keeps it."""
        refusal = denied(html=False)
        if refusal is not None:
            return refusal
        detail = store.call_detail(call_sid)
        path = (detail or {}).get("call", {}).get("recording")
        if not path or not Path(path).is_file():
            return Response(f"no recording of {call_sid} (none was made, or its retention has passed)\n",
                            status=404, mimetype="text/plain")
        return send_file(path, mimetype="audio/wav", as_attachment=True, download_name=f"{call_sid}.wav",
                         max_age=0)

    @app.get("/admin/calls/<call_sid>/timeline.svg")
    def admin_call_timeline(call_sid: str):
        refusal = denied(html=False)
        if refusal is not None:
            return refusal
        detail = store.call_detail(call_sid)
        if detail is None:
            return Response(f"no call {call_sid}\n", status=404, mimetype="text/plain")
        title = " · ".join(x for x in (call_sid, detail["call"].get("business") or "") if x)
        return Response(render(detail["timeline"], title), mimetype="image/svg+xml",
                        headers={"Content-Security-Policy": SVG_CSP, "X-Frame-Options": "SAMEORIGIN"})
