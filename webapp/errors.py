"""The one error boundary of the web app: every failure becomes a JSON error with a stable code.

``{"error": {"code": "spec_invalid", "message": "...", "problems": [...]}}``;
spec and profile problems carry file, line, column and JSON path. Codes:

=========================  ======  ============================================================
code                       status  when
=========================  ======  ============================================================
invalid_request            400     malformed JSON/YAML body, bad parameter
unauthorized               401     no or bad credentials
forbidden                  403     the caller may not do this
csrf_failed                403     a session-authenticated change without the CSRF token
not_found                  404     no such object (or not visible to the caller)
method_not_allowed         405     with Allow: the methods the route takes
conflict                   409     name taken, object still in use
payload_too_large          413     body over MAX_CONTENT_LENGTH
unsupported_media_type     415     body type other than JSON or YAML
spec_invalid               422     deploy spec problems (``problems``)
profile_invalid            422     cluster profile problems (``problems``)
render_failed              422     the spec renders to an object Kubernetes would refuse
repo_unavailable           503     the cluster repository could not be written; retried later
internal                   500     a bug; logged with its traceback, never shown
=========================  ======  ============================================================
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, redirect, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from renderer.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProfileError,
    RenderError,
    RepoError,
    SpecError,
)
from webapp.auth import Unauthorized

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
}


def error_response(status: int, code: str, message: str, **extra):
    body = {"error": {"code": code, "message": message, **extra}}
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="shipyard"'
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(SpecError)
    def _spec(exc: SpecError):
        return error_response(422, "spec_invalid", f"{len(exc.problems)} problem(s) in the spec",
                              problems=[p.as_dict() for p in exc.problems])

    @app.errorhandler(ProfileError)
    def _profile(exc: ProfileError):
        return error_response(422, "profile_invalid", f"{len(exc.problems)} problem(s) in the cluster profile",
                              problems=[p.as_dict() for p in exc.problems])

    @app.errorhandler(RenderError)
    def _render(exc: RenderError):
        return error_response(422, "render_failed", str(exc))

    @app.errorhandler(InvalidRequest)
    def _invalid(exc: InvalidRequest):
        return error_response(400, "invalid_request", str(exc))

    @app.errorhandler(Unauthorized)
    def _unauthorized(exc: Unauthorized):
        if request.blueprint == "pages" and request.method in ("GET", "HEAD"):
            # a person opening a page: send them to log in and back here afterwards
            query = request.query_string.decode("latin-1")
            return redirect(url_for("pages.login", next=request.path + (f"?{query}" if query else "")))
        return error_response(401, "unauthorized", str(exc))

    @app.errorhandler(PermissionDenied)
    def _forbidden(exc: PermissionDenied):
        return error_response(403, "forbidden", str(exc))

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return error_response(403, "csrf_failed", exc.description or "CSRF token missing or invalid")

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        return error_response(409, "conflict", str(exc))

    @app.errorhandler(RepoError)
    def _repo(exc: RepoError):
        log.warning("cluster repository error on %s %s: %s", request.method, request.path, exc)
        return error_response(503, "repo_unavailable", f"the cluster repository could not be written: {exc}")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
        # werkzeug's own headers belong to the answer: Allow on a 405 (RFC 9110 15.5.6), Retry-After, ...
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _internal(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; it has been logged")


__all__ = ["init_app", "error_response"]
