"""Log in with an OpenID Connect provider (Keycloak, Okta, Auth0, Azure AD, ...).

The authorization-code flow through authlib's Flask client, configured from
``OIDC_ISSUER``, ``OIDC_CLIENT_ID``/``OIDC_CLIENT_SECRET`` and ``OIDC_SCOPES``;
the provider's endpoints and signing keys come from its discovery document
(``<issuer>/.well-known/openid-configuration``). Each login carries a state
(bound to the browser's session cookie: a callback started elsewhere is
refused), a nonce and a PKCE S256 challenge; authlib checks the ID token's
signature against the provider's keys, its issuer, audience, expiry and nonce.
The provider's issuer is taken from the discovery document only when it is the
configured one, so a wrong or hijacked document cannot name another issuer.
(Azure AD: use the tenant's own issuer, ``.../<tenant id>/v2.0``; the
multi-tenant ``common`` endpoint names no single issuer.)

A login stands for the user (tenant, issuer, ``sub``); their groups come from
the ``OIDC_GROUPS_CLAIM`` claim of the ID token on every login, so role
bindings to groups (gitops.accounts.grants_for) follow the provider.
``OIDC_GROUP_ROLES`` (group -> role, tenant-wide) is kept as tenant-scope group
bindings made by ``oidc-sync``: created when missing, removed when no longer
configured; each change is in the audit log.

Everything that can go wrong on the way (the provider refusing, a stale or
forged state, an unreachable provider, a token that does not verify) becomes
a LoginFailed with a message for the person logging in and an HTTP status:
400 for the browser's request, 502 for the provider.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, redirect, request
from flask import session as cookie_session
from joserfc.errors import JoseError
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from gitops import accounts
from gitops.models import AuditEvent, RoleBinding, Tenant, User
from gitops.policy import ROLES

log = logging.getLogger(__name__)

CLIENT_NAME = "oidc"
SYNC_ACTOR = "oidc-sync"
PROVIDER_TIMEOUT = 10  # seconds for each call to the provider: discovery, keys, token exchange


class LoginFailed(Exception):
    """An OIDC login that cannot go on: ``message`` is for the person logging in."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def init_app(app: Flask) -> None:
    """Register the provider's client when ``OIDC_ISSUER`` is set; refuse a configuration that cannot work."""
    issuer = app.config.get("OIDC_ISSUER")
    if not issuer:
        return
    if not app.config.get("OIDC_CLIENT_ID"):
        raise ValueError("OIDC_ISSUER is set but OIDC_CLIENT_ID is not: register Shipyard as a client at the provider")
    group_roles = app.config.get("OIDC_GROUP_ROLES") or {}
    if not isinstance(group_roles, dict):
        raise ValueError('OIDC_GROUP_ROLES must map group names to roles, e.g. {"platform": "tenant-admin"}')
    for group, role in group_roles.items():
        if role not in ROLES:
            raise ValueError(f'OIDC_GROUP_ROLES gives group "{group}" the unknown role "{role}"; '
                             f'roles are {", ".join(ROLES)}')
    # One registry per app (authlib keeps it in app.extensions), not a module global: apps built by
    # create_app each talk to their own provider.
    oauth = OAuth(app)
    oauth.register(
        CLIENT_NAME,
        client_id=app.config["OIDC_CLIENT_ID"],
        client_secret=app.config.get("OIDC_CLIENT_SECRET"),
        server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": app.config["OIDC_SCOPES"], "code_challenge_method": "S256",
                       "default_timeout": PROVIDER_TIMEOUT},
    )


def enabled() -> bool:
    return bool(current_app.config.get("OIDC_ISSUER"))


def _client():
    if not enabled():
        raise LoginFailed(404, "Logging in with an identity provider is not set up on this server.")
    return current_app.extensions["authlib.integrations.flask_client"].create_client(CLIENT_NAME)


def _metadata(client) -> dict[str, Any]:
    """The provider's discovery document, once it proves to be the configured issuer's."""
    issuer = current_app.config["OIDC_ISSUER"]
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        log.warning("OIDC discovery document of %s could not be read: %s", issuer, exc)
        raise LoginFailed(502, "The identity provider could not be reached. Try again in a moment.") from exc
    if str(metadata.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        log.error("OIDC provider at %s names its issuer %r; set OIDC_ISSUER to exactly that",
                  issuer, metadata.get("issuer"))
        # Forget the document, so a corrected provider is read again on the next login.
        client.server_metadata = {}
        raise LoginFailed(502, "The identity provider is misconfigured (its issuer does not match); "
                               "an administrator has to fix it.")
    return metadata


def authorize_redirect(redirect_uri: str, next_path: str) -> Response:
    """The redirect to the provider's login; the state, nonce, PKCE verifier and ``next`` stay in the session."""
    client = _client()
    _metadata(client)
    try:
        authorization = client.create_authorization_url(redirect_uri)
    except (requests.RequestException, AuthlibBaseError) as exc:
        log.warning("OIDC authorization URL could not be built: %s", exc)
        raise LoginFailed(502, "The identity provider could not be reached. Try again in a moment.") from exc
    client.save_authorize_data(redirect_uri=redirect_uri, next=next_path, **authorization)
    return redirect(authorization["url"])


def complete_login() -> tuple[dict[str, Any], str]:
    """The verified ID-token claims of the provider's redirect back, and where the login was going."""
    client = _client()
    state = request.args.get("state", "")
    state_data = client.framework.get_state_data(cookie_session, state) if state else None
    error = request.args.get("error")
    if error:
        if state_data is not None:
            client.framework.clear_state_data(cookie_session, state)
        described = request.args.get("error_description", "")[:200]
        log.info("OIDC provider refused a login: %s %s", error[:64], described)
        if error == "access_denied":
            message = "The identity provider did not let you log in (access denied)."
        else:
            message = f"The identity provider refused the login ({error[:64]})."
        raise LoginFailed(400, f"{message} {described}".strip())
    if state_data is None:
        raise LoginFailed(400, "This login is not valid any more (expired, already used, or started in another "
                               "browser). Please log in again.")
    if not request.args.get("code"):
        client.framework.clear_state_data(cookie_session, state)
        raise LoginFailed(400, "The identity provider sent no authorization code. Please log in again.")
    _metadata(client)
    try:
        token = client.authorize_access_token()  # exchanges the code with the PKCE verifier, checks the ID token
    except OAuthError as exc:  # the token endpoint answered with an OAuth error (a replayed code, a bad secret)
        log.warning("OIDC token exchange refused: %s", exc.error)
        raise LoginFailed(502, "The identity provider refused to complete the login. Please log in again.") from exc
    except requests.RequestException as exc:
        log.warning("OIDC token exchange failed: %s", exc)
        raise LoginFailed(502, "The identity provider could not be reached. Try again in a moment.") from exc
    except (AuthlibBaseError, JoseError, ValueError) as exc:  # signature, issuer, audience, nonce, expiry
        log.warning("OIDC ID token rejected: %s", exc)
        raise LoginFailed(502, "The identity provider's answer could not be verified; the login was refused.") \
            from exc
    claims = token.get("userinfo")
    if not claims or not claims.get("sub"):
        log.warning("OIDC token response without an ID token (scopes: %s)", current_app.config["OIDC_SCOPES"])
        raise LoginFailed(502, "The identity provider sent no ID token; OIDC_SCOPES must include openid.")
    return dict(claims), state_data.get("next") or ""


def groups_of(claims: dict[str, Any], claim: str) -> list[str]:
    """The group names in ``claim``: a list of names, or one name as a string (some providers send that)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value if isinstance(item, (str, int)) and str(item)]
    return []


def login_user_for(session: Session, config: dict[str, Any], claims: dict[str, Any]) -> User:
    """The user verified ``claims`` stand for (created or refreshed), with the configured group bindings in place."""
    tenant = accounts.ensure_tenant(session, config["TENANT"])
    sync_group_bindings(session, tenant, config.get("OIDC_GROUP_ROLES") or {})
    return accounts.oidc_user(session, tenant, str(claims["iss"]), claims,
                              groups_of(claims, config["OIDC_GROUPS_CLAIM"]))


def sync_group_bindings(session: Session, tenant: Tenant, group_roles: dict[str, str]) -> None:
    """Make the tenant-scope group bindings of ``oidc-sync`` exactly ``group_roles``.

    Bindings a person made are left alone, even for the same group. Logins may
    run at once: whoever has changes to make takes the tenant row's lock and
    looks again, so two of them never create the same binding twice.
    """
    wanted = {(str(group), role) for group, role in group_roles.items()}
    missing, stale = _binding_changes(session, tenant, wanted)
    if not missing and not stale:
        return
    session.execute(select(Tenant.id).where(Tenant.id == tenant.id).with_for_update())
    missing, stale = _binding_changes(session, tenant, wanted)
    for group, role in sorted(missing):
        session.add(RoleBinding(tenant_id=tenant.id, role=role, subject_kind="group", subject=group,
                                created_by=SYNC_ACTOR))
        _audit(session, tenant, "binding.create", group, role)
    for binding in stale:
        _audit(session, tenant, "binding.delete", binding.subject, binding.role)
        session.delete(binding)
    session.flush()


def _binding_changes(session: Session, tenant: Tenant,
                     wanted: set[tuple[str, str]]) -> tuple[set[tuple[str, str]], list[RoleBinding]]:
    bindings = list(session.scalars(select(RoleBinding).where(
        RoleBinding.tenant_id == tenant.id, RoleBinding.subject_kind == "group",
        RoleBinding.cluster_id.is_(None), RoleBinding.workspace_id.is_(None))))
    present = {(b.subject, b.role) for b in bindings}
    stale = [b for b in bindings if b.created_by == SYNC_ACTOR and (b.subject, b.role) not in wanted]
    return wanted - present, stale


def _audit(session: Session, tenant: Tenant, action: str, group: str, role: str) -> None:
    # gitops.audit.record wants a Principal; this change is made by the configuration, not by a person.
    session.add(AuditEvent(tenant_id=tenant.id, actor=SYNC_ACTOR, action=action, target=f"group:{group}",
                           detail={"role": role, "cluster": None, "workspace": None, "source": "OIDC_GROUP_ROLES"}))


__all__ = ["init_app", "enabled", "authorize_redirect", "complete_login", "login_user_for", "sync_group_bindings",
           "groups_of", "LoginFailed", "SYNC_ACTOR"]
