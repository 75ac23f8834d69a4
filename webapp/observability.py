"""Request metrics and logs, ``/metrics`` in Prometheus format, and ``/healthz``."""

from __future__ import annotations

import hmac
import logging
import re
import time

from flask import Blueprint, Flask, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from gitops import metrics
from webapp.auth import public
from webapp.errors import error_response
from webapp.plane import db_session

log = logging.getLogger("shipyard.access")
bp = Blueprint("observability", __name__)


@bp.get("/metrics")
@public("scraped by Prometheus with METRICS_TOKEN as a bearer token; without one set, open only if METRICS_PUBLIC")
def metrics_view():
    # Request rates by route and deploy outcomes say a lot about a tenant's activity: closed
    # unless the operator chose a token, or said they are public (`shipyard up` on 127.0.0.1).
    token = current_app.config["METRICS_TOKEN"]
    if token:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), str(token).encode()):
            return error_response(401, "unauthorized", "metrics need the metrics token: "
                                                       "send Authorization: Bearer <METRICS_TOKEN>")
    elif not current_app.config["METRICS_PUBLIC"]:
        return error_response(401, "unauthorized", "metrics are not public: set METRICS_TOKEN (SHIPYARD_METRICS_TOKEN) "
                                                   "and scrape with it as a bearer token, or set METRICS_PUBLIC=true")
    return metrics.exposition(), 200, {"Content-Type": CONTENT_TYPE_LATEST}


@bp.get("/healthz")
@public("liveness and readiness probe: says only whether the database answers")
def healthz():
    db_session().execute(text("SELECT 1"))
    return {"status": "ok"}


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A log line shows control characters of a path as escapes, never raw (a NUL, a newline forging a line).
_PRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def _escaped(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.before_request
    def _start():
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        # A request refused at the door (webapp.request_text) never reached _start.
        started = g.get("started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
        # Any token is a method to werkzeug: a label per made-up method would grow without bound.
        method = request.method if request.method in _METHODS else "other"
        metrics.REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
        metrics.REQUEST_SECONDS.labels(endpoint).observe(elapsed)
        if response.status_code == 204 and request.endpoint == "pages.live":
            return response  # an open page asking whether anything changed, every second: counted, not logged
        principal = g.get("principal")
        log.info("request", extra={
            "method": method, "path": _PRINTABLE.sub(_escaped, request.path), "status": response.status_code,
            "ms": round(elapsed * 1000, 2), "user": principal.name if principal else None,
        })
        return response


__all__ = ["init_app", "bp"]
