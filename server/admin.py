"""Read-only listings of recent calls and leads, behind a bearer token (``ADMIN_TOKEN``).

``GET /admin/calls`` and ``GET /admin/leads`` answer JSON (``?limit=``, at most 500); ``GET /admin``
is a small HTML page of both. The token goes in ``Authorization: Bearer <token>`` (or ``?token=``
for a browser, when no bearer header is sent). Without ``ADMIN_TOKEN`` the listings are off (404), so a fresh deployment never
exposes leads by accident. Leads carry the callback phone in full: that is what the business needs.
"""
from __future__ import annotations

import hmac
from html import escape

from flask import Flask, Response, jsonify, request

from server.settings import Secret
from server.storage.db import Store

MAX_LIMIT = 500


def bearer(req) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None without one."""
    scheme, _, credentials = req.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def token_matches(given: str | None, token: Secret) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.reveal().encode())


def register_admin(app: Flask, store: Store, token: Secret) -> None:
    def denied() -> Response | None:
        if not token:
            return Response("admin listings are off: set ADMIN_TOKEN to enable them\n", status=404)
        given = bearer(request)
        if not token_matches(given if given is not None else request.args.get("token", ""), token):
            return Response("a valid admin token is required\n", status=401,
                            headers={"WWW-Authenticate": 'Bearer realm="prosaas-admin"'})
        return None

    def limit() -> int:
        try:
            return max(1, min(MAX_LIMIT, int(request.args.get("limit", "50"))))
        except ValueError:
            return 50

    @app.get("/admin/calls")
    def admin_calls():
        return denied() or jsonify(calls=store.recent_calls(limit()))

    @app.get("/admin/leads")
    def admin_leads():
        return denied() or jsonify(leads=store.recent_leads(limit()), outbox=store.outbox_counts())

    @app.get("/admin")
    def admin_page():
        refusal = denied()
        if refusal is not None:
            return refusal
        return Response(_page(store.recent_calls(limit()), store.recent_leads(limit())), mimetype="text/html")


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(calls: list[dict], leads: list[dict]) -> str:
    for lead in leads:
        lead["delivery"] = ", ".join(f"{d['status']}×{d['attempts']}" for d in lead["deliveries"]) or "-"
    return ("<!doctype html><meta charset=utf-8><title>ProSaaS calls and leads</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
            "table{border-collapse:collapse;margin-bottom:2em}</style>"
            f"<h1>Leads</h1>{_table(leads, ['created_at', 'business', 'status', 'service', 'city', 'name', 'phone', 'missing', 'delivery'])}"
            f"<h1>Calls</h1>{_table(calls, ['started_at', 'business', 'caller', 'outcome', 'hangup_reason', 'turns', 'latency_median_ms'])}")
