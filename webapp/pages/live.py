"""Open pages that follow the clusters: a poll that costs almost nothing while nothing changed.

A page that shows live state is rendered with a *live ticket* (signed with the
app's secret key: the user, the page's scope, an expiry) and the *fingerprint*
of that scope (gitops.dashboard). Its script asks ``GET /live?t=<ticket>&seen=
<fingerprint>`` every ``DASHBOARD_POLL_SECONDS`` while the tab is visible:

- 204 when the fingerprint is unchanged: a signature check (once per ticket,
  remembered until it expires) and a dictionary look-up, no session, no user
  and no database read (fingerprints are read at most every
  ``FINGERPRINT_SECONDS`` per scope and process, whoever asks); answered before
  Flask (``UnchangedFastPath``) when this process has just said the same;
- 200 when it moved: the page then fetches itself again, through its own view
  with the caller's session and every authorization check, and swaps the
  regions marked ``data-live``; the new render carries a new ticket;
- 401 for a ticket that is forged or expired: the page fetches itself again
  (a new ticket, or the login page when the session ended).

So an open page holds no thread and no connection between polls: a thousand
open pages cost a thousand small requests per poll interval, nearly all 204.
A ticket tells only whether its own scope changed, never what changed.

Also here: the pages' CSS and JS, served by the control plane itself (no CDN:
control planes often sit in private networks), with a content hash in their
URL so browsers keep them until they change.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

from flask import abort, current_app, request, send_file
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer

from gitops import dashboard, metrics, status
from webapp.auth import public
from webapp.pages.blueprint import bp
from webapp.plane import plane

TICKET_SECONDS = 600
FINGERPRINT_SECONDS = 0.5
STATIC = Path(__file__).resolve().parent.parent / "static"
_ASSETS = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="shipyard-live-page")


def ticket(user_id: int, scope: str) -> str:
    """A live ticket for ``scope`` ("tenant:<id>" or "app:<id>"), for this user."""
    return _serializer().dumps([user_id, scope])


def scope_fingerprint(scope: str) -> str:
    """The scope's fingerprint, read from the database at most every FINGERPRINT_SECONDS per process."""
    cache: _Fingerprints = current_app.extensions.setdefault("shipyard.fingerprints", _Fingerprints())
    return cache.get(scope)


class _Fingerprints:
    def __init__(self, size: int = 10_000):
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, str]] = {}
        self._size = size

    def fresh(self, scope: str) -> str | None:
        """The scope's fingerprint if it was read within FINGERPRINT_SECONDS, else None."""
        known = self._values.get(scope)
        return known[1] if known is not None and time.monotonic() - known[0] < FINGERPRINT_SECONDS else None

    def get(self, scope: str) -> str:
        value = self.fresh(scope)
        if value is not None:
            return value
        now = time.monotonic()
        value = _read(scope)
        with self._lock:
            if len(self._values) >= self._size:
                self._values.clear()
            self._values[scope] = (now, value)
        return value


def _read(scope: str) -> str:
    kind, _, ident = scope.partition(":")
    settings = status.StatusSettings.from_config(current_app.config)
    with plane().read_sessions() as session:
        if kind == "app":
            return dashboard.fingerprint(session, int(ident), settings)
        return dashboard.tenant_fingerprint(session, int(ident), settings)


def _scope_of(presented: str) -> str | None:
    """The scope of a live ticket, or None when it is forged or expired. A ticket is checked once
    and remembered until it expires: an open page presents the same one every second."""
    tickets: dict = current_app.extensions.setdefault("shipyard.live_tickets", {})
    now = time.time()
    known = tickets.get(presented)
    if known is not None:
        return known[1] if now < known[0] else None
    try:
        (_user, scope), issued = _serializer().loads(presented, max_age=TICKET_SECONDS, return_timestamp=True)
    except (BadSignature, ValueError, TypeError):
        return None
    if not isinstance(scope, str) or not scope.partition(":")[2].isdigit():
        return None
    if len(tickets) >= 50_000:
        tickets.clear()
    tickets[presented] = (issued.timestamp() + TICKET_SECONDS, scope)
    return scope


@bp.get("/live")
@public("authorized by the signed ticket its page was rendered with (user, scope, 10 minutes); says only "
        "whether that page's scope changed, and the page fetches the change with the caller's session")
def live():
    scope = _scope_of(request.args.get("t", ""))
    if scope is None:
        return "", 401, {"Cache-Control": "no-store"}
    current = scope_fingerprint(scope)
    if current == request.args.get("seen"):
        return "", 204, {"Cache-Control": "no-store"}
    return current, 200, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


def _digest(name: str) -> str:
    digests = current_app.extensions.setdefault("shipyard.asset_digests", {})
    if name not in digests:
        digests[name] = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return digests[name]


def asset_url(name: str) -> str:
    return f"/static/{_digest(name)}/{name}"


@bp.get("/static/<digest>/<name>")
@public("the dashboard's own CSS and JavaScript, the same for everyone")
def static_asset(digest: str, name: str):
    if name not in _ASSETS:
        abort(404)
    response = send_file(STATIC / name, mimetype=_ASSETS[name], max_age=0)
    if digest == _digest(name):
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@bp.app_context_processor
def _assets() -> dict:
    return {"asset_url": asset_url}


class SessionInterface(SecureCookieSessionInterface):
    """The signed-cookie session, left unopened for ``/live``: its ticket is its authorization, and
    checking the session cookie's signature on every ask would double what a 204 costs."""

    def open_session(self, app, request):
        if request.path == "/live":
            return self.null_session_class()
        return super().open_session(app, request)


class UnchangedFastPath:
    """WSGI middleware answering the commonest ask, "has my page changed?" with "no", before Flask.

    Only from what ``live`` itself already decided in this process: a ticket it checked (and that
    has not expired) and a fingerprint it read within FINGERPRINT_SECONDS, equal to the one the
    page shows. Anything else (a ticket not seen yet, a stale fingerprint, a change) goes through
    Flask to ``live``, which is the route's authority. It saves Flask's request context, hooks and
    response machinery: what a thousand open pages cost is mostly these answers.
    """

    def __init__(self, app, wsgi_app):
        self.app, self.wsgi_app = app, wsgi_app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/live" and environ.get("REQUEST_METHOD") == "GET":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            presented, seen = query.get("t", [""])[0], query.get("seen", [None])[0]
            known = self.app.extensions.get("shipyard.live_tickets", {}).get(presented)
            fingerprints = self.app.extensions.get("shipyard.fingerprints")
            if known is not None and time.time() < known[0] and fingerprints is not None \
                    and seen is not None and fingerprints.fresh(known[1]) == seen:
                metrics.REQUESTS.labels("GET", "/live", "204").inc()
                start_response("204 NO CONTENT", [("Cache-Control", "no-store")])
                return [b""]
        return self.wsgi_app(environ, start_response)


def init_app(app) -> None:
    app.session_interface = SessionInterface()
    app.wsgi_app = UnchangedFastPath(app, app.wsgi_app)


__all__ = ["ticket", "scope_fingerprint", "asset_url", "init_app", "SessionInterface", "UnchangedFastPath",
           "TICKET_SECONDS"]
