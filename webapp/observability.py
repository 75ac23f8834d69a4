"""Request metrics and logs, ``/metrics`` in Prometheus format, and ``/healthz``."""

from __future__ import annotations

import hmac
import logging
import time

from flask import Blueprint, Flask, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gitops import metrics
from webapp.auth import public
from webapp.errors import error_response
from webapp.plane import db_session

log = logging.getLogger("shipyard.access")
bp = Blueprint("observability", __name__)


@bp.get("/metrics")
@public("scraped by Prometheus; needs METRICS_TOKEN as a bearer token when that is set")
def metrics_view():
    token = current_app.config["METRICS_TOKEN"]
    if token:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            return error_response(401, "unauthorized", "metrics need the metrics token")
    return generate_latest(metrics.REGISTRY), 200, {"Content-Type": CONTENT_TYPE_LATEST}


@bp.get("/healthz")
@public("liveness and readiness probe: says only whether the database answers")
def healthz():
    db_session().execute(text("SELECT 1"))
    return {"status": "ok"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.before_request
    def _start():
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
        metrics.REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        metrics.REQUEST_SECONDS.labels(endpoint).observe(elapsed)
        principal = g.get("principal")
        log.info("request", extra={
            "method": request.method, "path": request.path, "status": response.status_code,
            "ms": round(elapsed * 1000, 2), "user": principal.name if principal else None,
        })
        return response


__all__ = ["init_app", "bp"]
