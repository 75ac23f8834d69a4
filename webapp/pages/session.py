"""Logging in and out (local password or OIDC), and the caller's own account page.

A login (password or OIDC, webapp.oidc) starts a new session: whatever the
browser's cookie held before, including its CSRF secret, is dropped, so a
session planted before the login is worth nothing after it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask import session as cookie_session
from flask_login import login_user, logout_user

from gitops import accounts
from gitops.models import User
from webapp import oidc
from webapp.auth import AUTHENTICATED, SessionUser, current_principal, public, requires
from webapp.pages.blueprint import bp
from webapp.plane import db_session, plane


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a login link must not bounce anyone elsewhere."""
    if not target:
        return url_for("pages.overview")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("pages.overview")
    return target


def _login_page(status: int = 200):
    return render_template("login.html", oidc=oidc.enabled()), status


def _start_session(user: User, next_path: str | None):
    cookie_session.clear()
    login_user(SessionUser(user))
    return redirect(_safe_next(next_path))


@bp.route("/login", methods=["GET", "POST"])
@public("the login form itself; CSRF-protected")
def login():
    if request.method == "POST":
        session = db_session()
        user = accounts.check_password(session, current_app.config["TENANT"],
                                       request.form.get("username", ""), request.form.get("password", ""))
        if user is None:
            flash("Wrong username or password.")
            return _login_page(401)
        session.commit()
        return _start_session(user, request.args.get("next"))
    return _login_page()


@bp.get("/login/oidc")
@public("starts the identity provider's login; the state it sets is checked on the way back")
def oidc_login():
    callback = current_app.config["PUBLIC_URL"].rstrip("/") + url_for("pages.oidc_callback")
    try:
        return oidc.authorize_redirect(callback, _safe_next(request.args.get("next")))
    except oidc.LoginFailed as exc:
        flash(exc.message)
        return _login_page(exc.status)


@bp.get("/login/oidc/callback")
@public("the identity provider's redirect back: state, PKCE, nonce and the ID token's signature are checked")
def oidc_callback():
    try:
        claims, next_path = oidc.complete_login()
    except oidc.LoginFailed as exc:
        flash(exc.message)
        return _login_page(exc.status)
    # A GET that writes (the user, their groups, the configured group bindings): the writer sessions.
    with plane().sessions.begin() as session:
        user = oidc.login_user_for(session, current_app.config, claims)
    if not user.active:
        flash("This account is disabled; ask a tenant admin.")
        return _login_page(403)
    return _start_session(user, next_path)


@bp.post("/logout")
@public("ends the caller's own session; CSRF-protected")
def logout():
    logout_user()
    cookie_session.clear()
    return redirect(url_for("pages.login"))


@bp.get("/account")
@requires(AUTHENTICATED)
def account():
    return render_template("account.html", principal=current_principal())

