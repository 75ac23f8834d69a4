"""HTML pages: log in (local password or OIDC), the apps with their state, an app with its versions.

Forms carry a CSRF token (flask-wtf); pages read through the same services
and authorization as the API.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_user, logout_user

from gitops import accounts, deploy
from webapp.auth import AUTHENTICATED, SessionUser, current_principal, public, requires
from webapp.plane import context, db_session

bp = Blueprint("pages", __name__, template_folder="templates")


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a login link must not bounce anyone elsewhere."""
    if not target:
        return url_for("pages.apps")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.apps")
    return target


@bp.route("/login", methods=["GET", "POST"])
@public("the login form itself; CSRF-protected")
def login():
    if request.method == "POST":
        session = db_session()
        user = accounts.check_password(session, current_app.config["TENANT"],
                                       request.form.get("username", ""), request.form.get("password", ""))
        if user is None:
            flash("Wrong username or password.")
            return render_template("login.html", oidc=bool(current_app.config["OIDC_ISSUER"])), 401
        session.commit()
        login_user(SessionUser(user))
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", oidc=bool(current_app.config["OIDC_ISSUER"]))


@bp.post("/logout")
@public("ends the caller's own session; CSRF-protected")
def logout():
    logout_user()
    return redirect(url_for("pages.login"))


@bp.get("/")
@public("redirects to the apps page or to the login page")
def index():
    return redirect(url_for("pages.apps") if current_principal() else url_for("pages.login"))


@bp.get("/apps")
@requires("app.read")
def apps():
    rows = deploy.list_apps(context(), limit=1000)
    return render_template("apps.html", rows=rows, principal=current_principal())


@bp.get("/apps/<cluster>/<workspace>/<app>")
@requires("app.read")
def app_page(cluster: str, workspace: str, app: str):
    ctx = context()
    row = deploy.get_app(ctx, cluster, workspace, app)
    versions = deploy.list_versions(ctx, row, limit=100)
    return render_template("app.html", app=row, versions=versions, cluster=cluster, workspace=workspace,
                           principal=current_principal())


@bp.get("/account")
@requires(AUTHENTICATED)
def account():
    return render_template("account.html", principal=current_principal())


__all__ = ["bp"]
