"""Who is calling, and the declaration every route makes of what it needs.

Callers are recognised by, in order: an ``Authorization: Bearer shy_...`` API
token, or a flask-login session (local password or OIDC login). Every view is
decorated with exactly one of

- ``@requires("app.deploy")``: a principal holding that permission somewhere
  (the service then checks the exact object's scope, gitops.policy);
- ``@requires(AUTHENTICATED)``: any logged-in principal (their own tokens, "me");
- ``@public("why")``: no principal (login pages, health, the OpenAPI document),
  or a route authorized by other means (git over HTTP with a cluster token).

tests/test_authz.py walks Flask's URL map and fails on a view that declares
nothing. Session-authenticated API calls that change state must carry the
CSRF token (``X-CSRFToken``), as form posts do; token-authenticated ones need
not, since a browser never attaches a bearer token by itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import Flask, g, request
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect, validate_csrf
from sqlalchemy import select
from wtforms import ValidationError

from gitops import accounts
from gitops.models import User
from gitops.policy import Principal
from contract.errors import PermissionDenied, Unauthorized
from webapp.plane import db_session, plane

AUTHENTICATED = "authenticated"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

csrf = CSRFProtect()
login_manager = LoginManager()


class SessionUser(UserMixin):
    """What flask-login keeps in the session: the user id and a marker of their password state."""

    def __init__(self, user: User):
        self.id = str(user.id)
        self.user = user


@login_manager.user_loader
def _load_user(user_id: str) -> SessionUser | None:
    if not user_id.isdigit():
        return None
    user = db_session().get(User, int(user_id))
    return SessionUser(user) if user is not None and user.active else None


# Requests after which a cached token principal may be wrong: tokens revoked, role bindings
# or users changed, scopes deleted. Other workers see the change within TOKEN_CACHE_SECONDS.
_CHANGES_PRINCIPALS = frozenset({"api.revoke_token", "api.create_binding", "api.delete_binding", "api.create_user",
                                 "api.delete_cluster", "api.delete_workspace"})


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "pages.login"
    login_manager.session_protection = "strong"
    app.after_request(_forget_principals)


def _forget_principals(response):
    if request.endpoint in _CHANGES_PRINCIPALS and response.status_code < 400:
        plane().principals.clear()
    return response


def current_principal() -> Principal | None:
    """The principal of this request, or None; raises Unauthorized for a bad bearer token."""
    if "principal" in g:
        return g.principal
    principal = None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Unauthorized("use Authorization: Bearer <API token>")
        principal = accounts.principal_from_token(db_session(), credentials.strip(), _record_token_use,
                                                  plane().principals)
        if principal is None:
            raise Unauthorized("the API token is not valid (wrong, expired or revoked)")
        g.via_token = True
    elif current_user.is_authenticated:
        principal = accounts.principal_for(db_session(), current_user.user)
        g.via_token = False
    g.principal = principal
    return principal


def _record_token_use(token_id: int) -> None:
    """A read request's session is read-only: the use is recorded in a short write transaction
    of its own. A write request records it in its own transaction (a second writer would wait
    on the first for SQLite's lock)."""
    if request.method in _SAFE_METHODS:
        with plane().sessions.begin() as session:
            accounts.record_token_use(session, token_id)
    else:
        accounts.record_token_use(db_session(), token_id)


def _declare(view: Callable, kind: str, value: str) -> None:
    if getattr(view, "shipyard_authz", None) is not None:
        raise RuntimeError(f"{view.__name__} declares its authorization twice")
    view.shipyard_authz = (kind, value)


def requires(permission: str) -> Callable:
    """The view needs a principal holding ``permission`` somewhere (or just a principal)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            if principal is None:
                raise Unauthorized("log in or send an API token")
            if request.method not in _SAFE_METHODS and not g.via_token:
                try:
                    # the header for API calls, the form's field for a page's form post
                    validate_csrf(request.headers.get("X-CSRFToken") or
                                  (request.form.get("csrf_token") if request.blueprint == "pages" else None))
                except ValidationError as exc:
                    raise CSRFError(f"CSRF token missing or invalid: {exc}") from exc
            if permission != AUTHENTICATED and not principal.can_anywhere(permission):
                raise PermissionDenied(f"{principal.name} may not {permission}")
            return view(*args, **kwargs)

        _declare(wrapper, "permission", permission)
        return wrapper

    return decorate


def public(reason: str) -> Callable:
    """The view needs no principal; ``reason`` says why (and how it is protected instead)."""

    def decorate(view: Callable) -> Callable:
        _declare(view, "public", reason)
        return view

    return decorate


def user_by_name(username: str) -> User | None:
    from flask import current_app

    from gitops.models import Tenant

    return db_session().scalar(
        select(User).join(Tenant).where(Tenant.name == current_app.config["TENANT"], User.username == username))


__all__ = ["requires", "public", "AUTHENTICATED", "Unauthorized", "current_principal", "csrf", "login_manager",
           "SessionUser", "init_app", "user_by_name"]
