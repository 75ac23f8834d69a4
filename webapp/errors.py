"""The one error boundary of the web app: every failure becomes a JSON error with a stable code,
or, for a person's browser on a page, the same error as an HTML page in the dashboard's layout.

``{"error": {"code": "spec_invalid", "message": "...", "problems": [...]}}``;
spec and profile problems carry file, line, column and JSON path. The codes
and what each means are ``contract.errors.ERROR_CODES``; ``HTTP_STATUS`` below
is their one translation to HTTP status. Errors Shipyard raises carry their
code; Flask's own (no such route, 405 with ``Allow``, a body over
MAX_CONTENT_LENGTH) answer with the code of their status; anything else is a
bug: 500 ``internal``, logged with its traceback, never shown.

Pages (the ``pages`` blueprint, and unknown paths outside the API, agent, git and
metrics routes asked for by a browser) get an HTML page with the same status and
message: a missing app is a 404 page with a way back, never raw JSON.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, make_response, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from contract.errors import ShipyardError, Unauthorized

log = logging.getLogger(__name__)

# The one translation of Shipyard's error codes (contract.errors) to HTTP status.
HTTP_STATUS = {
    "invalid_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "csrf_failed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "spec_invalid": 422,
    "profile_invalid": 422,
    "render_failed": 422,
    "repo_unavailable": 503,
    "internal": 500,
}
# An HTTP error of Flask's own (no such route, a method the route does not take, a body too large)
# answers with the first code of its status; the problem-carrying codes are Shipyard's alone.
_CODE_OF_STATUS: dict[int, str] = {}
for _code, _status in HTTP_STATUS.items():
    if _code not in ("spec_invalid", "profile_invalid", "render_failed"):
        _CODE_OF_STATUS.setdefault(_status, _code)
_CODE_OF_STATUS[422] = "invalid_request"
_MESSAGES = {
    "spec_invalid": "{count} problem(s) in the spec",
    "profile_invalid": "{count} problem(s) in the cluster profile",
    "repo_unavailable": "the cluster repository could not be written: {error}",
}


_MACHINE_PATHS = ("/api/", "/agent/", "/git/", "/metrics", "/healthz", "/live", "/static/")
_TITLES = {400: "That request was not right", 401: "Please log in", 403: "Not allowed", 404: "Not found",
           405: "Not allowed here", 409: "Conflict", 413: "Too large", 422: "Not valid", 500: "Something went wrong",
           503: "Unavailable"}


def _wants_html() -> bool:
    """A person's browser on a page: the pages blueprint, or an unknown path a browser asked for; a
    client sending an API token is a program, and gets JSON wherever it calls."""
    if request.authorization is not None:
        return False
    if request.blueprint == "pages" and request.endpoint not in ("pages.live", "pages.static_asset"):
        return True
    if request.blueprint is not None or request.path.startswith(_MACHINE_PATHS):
        return False
    accepted = request.accept_mimetypes
    return accepted.best_match(["application/json", "text/html"]) == "text/html" and accepted["text/html"] > 0


def _html_error(status: int, message: str):
    from webapp.auth import current_principal

    try:
        principal = current_principal()
    except Exception:  # noqa: BLE001 - a bad token or a broken database: the error page shows no user
        principal = None
    try:
        return make_response(render_template("error.html", status=status, title=_TITLES.get(status, "Error"),
                                             message=message, principal=principal), status)
    except Exception:  # noqa: BLE001 - the error page must not fail; the JSON answer says the same
        log.exception("the error page could not be rendered")
        return None


def error_response(status: int, code: str, message: str, **extra):
    if _wants_html():
        page = _html_error(status, message)
        if page is not None:
            return page
    body = {"error": {"code": code, "message": message, **extra}}
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="shipyard"'
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ShipyardError)
    def _shipyard(exc: ShipyardError):
        code = exc.code if exc.code in HTTP_STATUS else "internal"
        if code == "internal":
            return _internal(exc)
        if isinstance(exc, Unauthorized) and request.blueprint == "pages" and request.method in ("GET", "HEAD"):
            # a person opening a page: send them to log in and back here afterwards
            query = request.query_string.decode("latin-1")
            return redirect(url_for("pages.login", next=request.path + (f"?{query}" if query else "")))
        if code == "repo_unavailable":
            log.warning("cluster repository error on %s %s: %s", request.method, request.path, exc)
        problems = getattr(exc, "problems", None)
        message = _MESSAGES.get(code, "{error}").format(count=len(problems or ()), error=exc)
        extra = {"problems": [p.as_dict() for p in problems]} if problems is not None else {}
        return error_response(HTTP_STATUS[code], code, message, **extra)

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError):
        return error_response(HTTP_STATUS["csrf_failed"], "csrf_failed", exc.description or "CSRF token missing or invalid")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        response = error_response(status, _CODE_OF_STATUS.get(status, "http_error"), exc.description or exc.name)
        # werkzeug's own headers belong to the answer: Allow on a 405 (RFC 9110 15.5.6), Retry-After, ...
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _internal(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(HTTP_STATUS["internal"], "internal", "internal error; it has been logged")


__all__ = ["init_app", "error_response", "HTTP_STATUS"]
