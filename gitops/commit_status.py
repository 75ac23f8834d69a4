"""Commit statuses: what a spec repository's sync made of a commit, shown on that commit at its git provider.

After a sync that read a new commit (``SpecSync.new``: deployed, partial, failed with problems,
unchanged, or refused for a rewritten history), one status is posted on that commit, so the
merge request and the branch show whether its specs were deployed. A sync that finds the branch
where the last one left it has nothing new to say and posts nothing, nor does one that would say
again what the repository's last status said (a poll while the branch is behind):

==========  ==============================================================================
state       when, and the description
==========  ==============================================================================
success     no problems: "deployed: N new version(s)" or "in sync: nothing new to deploy"
failure     problems: "N spec file(s) with problems: <first file>:<line>"
error       the sync was refused, nothing deployed: a rewritten history (until a sync as a whole),
            or another reason the sync names (a repository without a role binding)
==========  ==============================================================================

Its context (GitHub, Gitea) or name (GitLab) is ``shipyard/<repository>``, its link the
repository's dashboard page (``<PUBLIC_URL>/admin/spec-repos/<repository>``). A status is
posted with the repository's https token, the password of its credentials: an ssh deploy
key gives no API access, so an ssh repository gets none, said in the sync's record. Which
provider's API (``SpecRepo.commit_status``): ``auto`` (the default) takes the provider whose
webhook delivery was last verified for the repository (``SpecRepo.provider``, webapp.hooks),
else the one the URL's host is (github.com, gitlab.com, bitbucket.org), else none; ``off``
posts nothing; a provider's name posts to that provider.

==================  ===================================================================================
provider            endpoint, authentication, fields
==================  ===================================================================================
GitHub              ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``, api ``https://api.github.com``
                    for github.com, ``https://HOST/api/v3`` for GitHub Enterprise Server;
                    ``Authorization: Bearer <token>``; ``state`` success, failure, error, pending;
                    ``context``, ``description`` (at most 140 characters: longer is a 422),
                    ``target_url``. Commit statuses, not checks: the Checks API takes only a
                    GitHub App's token, a status any token with the "Commit statuses" write
                    permission (``repo:status`` for a classic token). At most 1000 statuses per
                    commit and context: a sync that would say again what the last one said
                    posts nothing.
                    https://docs.github.com/en/rest/commits/statuses#create-a-commit-status
                    https://docs.github.com/en/enterprise-server@latest/rest/enterprise-admin
GitLab              ``POST https://HOST/api/v4/projects/{url-encoded path}/statuses/{sha}``;
                    ``PRIVATE-TOKEN: <token>`` (personal, project and group access tokens),
                    ``Authorization: Bearer`` for an OAuth token (user name ``oauth2``); ``state``
                    pending, running, success, failed, canceled; ``name``, ``description``,
                    ``target_url``.
                    https://docs.gitlab.com/api/commits/#set-commit-pipeline-status
                    https://docs.gitlab.com/api/rest/authentication/
Gitea / Forgejo     ``POST https://HOST/api/v1/repos/{owner}/{repo}/statuses/{sha}``;
                    ``Authorization: token <token>``; ``state`` pending, success, error, failure,
                    warning; ``context``, ``description``, ``target_url``.
                    https://docs.gitea.com/development/api-usage
                    https://forgejo.org/docs/latest/user/api-usage/
Bitbucket Cloud     ``POST https://api.bitbucket.org/2.0/repositories/{workspace}/{repo}/commit/{sha}/
                    statuses/build``; an app password with Basic authentication (user name and
                    password), an access token (user name ``x-token-auth``) as ``Authorization:
                    Bearer``; ``key`` (at most 40 characters), ``state`` SUCCESSFUL, FAILED,
                    INPROGRESS, STOPPED; ``url`` (required), ``name``, ``description``.
                    https://developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/
Bitbucket Server /  ``POST https://HOST[/context]/rest/build-status/1.0/commits/{sha}`` (the part of
Data Center         the clone URL before ``/scm/``); authenticated as Bitbucket Cloud; ``state``
                    SUCCESSFUL, FAILED, INPROGRESS; ``key``, ``url`` (both required), ``name``,
                    ``description``, each at most 255 characters (``url`` 450).
                    https://developer.atlassian.com/server/bitbucket/how-tos/updating-build-status-for-commits
==================  ===================================================================================

Posting goes through the tenant's egress policy like a fetch (gitops.egress): the API's host
is resolved and every address checked, the connection made to a checked address, and TLS
verified for the host's name against the system's CAs and GIT_CA_BUNDLE
(gitops.egress_http). No redirect is followed, at most :data:`MAX_ANSWER_BYTES` of the
answer are read, and each step (connect, send, each read) waits at most :data:`TIMEOUT`
seconds. Nothing of it raises out of a sync: the sync is recorded and committed first
(gitops.spec_repos), then the status posted and what came of it recorded on the sync
(``SpecSync.commit_status``: provider, commit, state, description, outcome ``posted``,
``skipped`` or ``failed``, and a plain detail) and logged. The token goes into one request
header and nowhere else: not the record, not a message, not the log.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select

from contract.errors import InvalidRequest, RepoError
from gitops import egress
from gitops.egress_http import CheckedTransport, untrusted_certificate
from gitops.https_gateway import UNTRUSTED
from gitops.models import SpecRepo, SpecSync, Tenant
from gitops.push_hooks import Provider
from gitops.remote import RemoteCredentials
from gitops.service_context import Context

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds each step of a post may wait: a slow provider delays no sync for long
MAX_ANSWER_BYTES = 4096  # of an answer, read for the log: enough for an error's message
MODES = ("auto", "off", *(provider.value for provider in Provider))

# The providers a URL's host is, for "auto" before any webhook delivery names one.
HOSTED = {"github.com": Provider.GITHUB, "gitlab.com": Provider.GITLAB, "bitbucket.org": Provider.BITBUCKET_CLOUD}

# Our three states in each provider's words.
_STATES = {
    Provider.GITHUB: {"success": "success", "failure": "failure", "error": "error"},
    Provider.GITEA: {"success": "success", "failure": "failure", "error": "error"},
    Provider.GITLAB: {"success": "success", "failure": "failed", "error": "failed"},
    Provider.BITBUCKET_CLOUD: {"success": "SUCCESSFUL", "failure": "FAILED", "error": "FAILED"},
    Provider.BITBUCKET_SERVER: {"success": "SUCCESSFUL", "failure": "FAILED", "error": "FAILED"},
}
_DESCRIPTION_LIMITS = {Provider.GITHUB: 140}  # the others take 255
_BITBUCKET_KEY_LIMIT = 40
_BEHIND = ("rewritten", "unknown-old")  # the relations a sync refuses: gitops.spec_changes.SpecChanges.behind
_USER_AGENT = "Shipyard"


def mode(value: Any) -> str:
    """A ``commit_status`` setting, checked; InvalidRequest naming the choices otherwise."""
    if value not in MODES:
        raise InvalidRequest(f"commit_status is one of {', '.join(MODES)} (auto: the provider of the repository's "
                             "webhook, or of its host)")
    return value


def provider_for(repo: SpecRepo) -> Provider | None:
    """The provider a sync of ``repo`` posts its status to; None: none (off, or auto with nothing to go by)."""
    if repo.commit_status == "off":
        return None
    if repo.commit_status != "auto":
        return Provider(repo.commit_status)
    if repo.provider:
        return Provider(repo.provider)
    return HOSTED.get(egress.parse_remote_url(repo.url)[0].host)


# --- what a sync says --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    state: str  # success | failure | error
    description: str


def verdict(run: SpecSync) -> Verdict:
    """What the finished sync ``run`` says of its commit (the module's docstring)."""
    if run.state == "refused":
        if run.relation in _BEHIND:
            return Verdict("error", "not deployed: the branch's history was rewritten; sync it as a whole to deploy it")
        return Verdict("error", f"not deployed: {run.problems[0]['message']}" if run.problems else "not deployed")
    if run.problems:
        located = [p for p in run.problems if p.get("file")]
        if not located:
            return Verdict("failure", f"{len(run.problems)} problem(s): {run.problems[0]['message']}")
        files = {p["file"] for p in located}
        return Verdict("failure", f"{len(files)} spec file(s) with problems: {located[0]['file']}:"
                                  f"{located[0]['line']}")
    made = sum(1 for version in run.versions if not version.get("unchanged"))
    return Verdict("success", f"deployed: {made} new version(s)" if made else "in sync: nothing new to deploy")


# --- the request, for each provider ------------------------------------------------------------------------


class NoStatus(Exception):
    """Why no status can be posted for a repository (said in the sync's record, not an error)."""


@dataclass(frozen=True)
class StatusRequest:
    """One POST to a provider's API. ``headers`` hold the token: never shown, logged or stored."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)  # what an answer echoing them must not bring into the log


def status_request(provider: Provider, url: egress.RemoteURL, commit: str, said: Verdict, context: str,
                   target_url: str | None, credentials: RemoteCredentials | None) -> StatusRequest:
    """The request that posts ``said`` on ``commit`` of the repository at ``url``; NoStatus saying why there is
    none (no token, a URL that names no repository there, Bitbucket without a link)."""
    if credentials is None or credentials.kind != "password" or not credentials.password:
        if credentials is not None and credentials.kind == "ssh-key":
            raise NoStatus("an ssh deploy key gives no access to the provider's API: register the repository "
                           "over https with a token to get commit statuses")
        raise NoStatus("a commit status is posted with the repository's https token, and it has none")
    status = _Status(_STATES[provider][said.state], context,
                     _fit(said.description, _DESCRIPTION_LIMITS.get(provider, 255)), target_url)
    endpoint, body = _REQUESTS[provider](url, commit, status)
    headers = {"User-Agent": _USER_AGENT, "Accept": "application/json", **_headers(provider, credentials)}
    secrets = (credentials.password, *(value.removeprefix("Basic ") for value in headers.values()
                                       if value.startswith("Basic ")))
    return StatusRequest(endpoint, body, headers, secrets)


@dataclass(frozen=True)
class _Status:
    state: str  # in the provider's words
    context: str
    description: str
    target_url: str | None


def _github(url: egress.RemoteURL, commit: str, status: _Status) -> tuple[str, dict[str, Any]]:
    owner, name = _owner_and_name(url, Provider.GITHUB)
    root = "https://api.github.com" if url.host == "github.com" else f"{_origin(url)}/api/v3"
    return f"{root}/repos/{owner}/{name}/statuses/{commit}", _context_body(status)


def _gitea(url: egress.RemoteURL, commit: str, status: _Status) -> tuple[str, dict[str, Any]]:
    owner, name = _owner_and_name(url, Provider.GITEA)
    return f"{_origin(url)}/api/v1/repos/{owner}/{name}/statuses/{commit}", _context_body(status)


def _gitlab(url: egress.RemoteURL, commit: str, status: _Status) -> tuple[str, dict[str, Any]]:
    project = quote("/".join(_segments(url, Provider.GITLAB)), safe="")
    body = {"state": status.state, "name": status.context, "description": status.description}
    return f"{_origin(url)}/api/v4/projects/{project}/statuses/{commit}", _linked(body, status.target_url)


def _bitbucket_cloud(url: egress.RemoteURL, commit: str, status: _Status) -> tuple[str, dict[str, Any]]:
    workspace, name = _owner_and_name(url, Provider.BITBUCKET_CLOUD)
    return (f"https://api.bitbucket.org/2.0/repositories/{workspace}/{name}/commit/{commit}/statuses/build",
            _bitbucket_body(status))


def _bitbucket_server(url: egress.RemoteURL, commit: str, status: _Status) -> tuple[str, dict[str, Any]]:
    segments = _segments(url, Provider.BITBUCKET_SERVER)
    if "scm" not in segments[:-2]:
        raise NoStatus("the URL's path is not a Bitbucket Server clone URL (…/scm/<project>/<repository>.git)")
    context_path = "".join(f"/{quote(part, safe='')}" for part in segments[:segments.index("scm")])
    return f"{_origin(url)}{context_path}/rest/build-status/1.0/commits/{commit}", _bitbucket_body(status)


_REQUESTS = {
    Provider.GITHUB: _github,
    Provider.GITEA: _gitea,
    Provider.GITLAB: _gitlab,
    Provider.BITBUCKET_CLOUD: _bitbucket_cloud,
    Provider.BITBUCKET_SERVER: _bitbucket_server,
}


def _context_body(status: _Status) -> dict[str, Any]:
    """GitHub's and Gitea's body."""
    body = {"state": status.state, "context": status.context, "description": status.description}
    return _linked(body, status.target_url)


def _linked(body: dict[str, Any], target_url: str | None) -> dict[str, Any]:
    return {**body, "target_url": target_url} if target_url else body


def _bitbucket_body(status: _Status) -> dict[str, Any]:
    """Bitbucket's body, Cloud's and Server's alike: a link is required, the key at most 40 characters."""
    if status.target_url is None:
        raise NoStatus("Bitbucket takes a build status only with a link, and this server has no PUBLIC_URL")
    key = status.context if len(status.context) <= _BITBUCKET_KEY_LIMIT else \
        "shipyard/" + hashlib.sha256(status.context.encode()).hexdigest()[:_BITBUCKET_KEY_LIMIT - len("shipyard/")]
    return {"key": key, "state": status.state, "name": status.context, "url": status.target_url,
            "description": status.description}


def _headers(provider: Provider, credentials: RemoteCredentials) -> dict[str, str]:
    """The provider's authentication header with the token, and what else its API asks for."""
    token, user = credentials.password, credentials.username
    if provider is Provider.GITHUB:
        return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}
    if provider is Provider.GITLAB:
        return {"Authorization": f"Bearer {token}"} if user == "oauth2" else {"PRIVATE-TOKEN": token}
    if provider is Provider.GITEA:
        return {"Authorization": f"token {token}"}
    if user == "x-token-auth":  # Bitbucket's access tokens
        return {"Authorization": f"Bearer {token}"}
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def _segments(url: egress.RemoteURL, provider: Provider) -> list[str]:
    """The URL's path as segments, without a trailing ``.git``; NoStatus for one that names no repository."""
    path = url.path.strip("/")
    segments = (path[:-4] if path.endswith(".git") else path).split("/")
    if len(segments) < 2 or any(part in ("", ".", "..") for part in segments):
        raise NoStatus(f"the URL's path names no {provider.value} repository (<owner>/<repository>)")
    return segments


def _owner_and_name(url: egress.RemoteURL, provider: Provider) -> tuple[str, str]:
    segments = _segments(url, provider)
    if len(segments) != 2:
        raise NoStatus(f"the URL's path names no {provider.value} repository (<owner>/<repository>)")
    return quote(segments[0], safe=""), quote(segments[1], safe="")


def _origin(url: egress.RemoteURL) -> str:
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"https://{host}:{url.port}" if url.explicit_port else f"https://{host}"


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- before the sync is committed: what to post --------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A status to post, with everything read from the database already: posting it takes no session.

    ``request`` None: nothing to post, and ``record`` says why (outcome ``skipped``).
    """

    record: dict[str, Any]
    request: StatusRequest | None = None
    policy: egress.EgressPolicy | None = None


def prepare(ctx: Context, repo: SpecRepo, run: SpecSync, credentials: RemoteCredentials | None) -> Pending | None:
    """The status the finished sync ``run`` posts on its commit, or None: no new commit read, statuses off or
    no provider known, or the sync before it said the same of the same commit already."""
    provider = provider_for(repo)
    if run.new is None or run.relation == "same" or provider is None:
        return None
    said = verdict(run)
    record = {"provider": provider.value, "commit": run.new, "state": said.state, "description": said.description}
    url, _ = egress.parse_remote_url(repo.url)
    target_url = f"{ctx.public_url.rstrip('/')}/admin/spec-repos/{repo.name}" if ctx.public_url else None
    try:
        request = status_request(provider, url, run.new, said, f"shipyard/{repo.name}", target_url, credentials)
    except NoStatus as exc:
        skipped = {**record, "outcome": "skipped", "detail": str(exc)}
        return None if _said_already(ctx, repo, run, skipped, ("commit", "outcome", "detail")) else Pending(skipped)
    if _said_already(ctx, repo, run, {**record, "outcome": "posted"}, (*record, "outcome")):
        return None
    tenant = ctx.session.get(Tenant, repo.tenant_id)
    return Pending(record, request, ctx.repos.policy(tenant.remote_allowed_hosts or ()))


def _said_already(ctx: Context, repo: SpecRepo, run: SpecSync, record: dict[str, Any], keys: tuple[str, ...]) -> bool:
    """Whether the last commit status of the repository's syncs before ``run`` was ``record``, as far as ``keys``
    tell: the same status posted, or the same reason for posting none (a failed post is tried again)."""
    last = ctx.session.scalars(select(SpecSync.commit_status).where(
        SpecSync.repo_id == repo.id, SpecSync.id != run.id, SpecSync.commit_status.is_not(None))
        .order_by(SpecSync.id.desc()).limit(1)).first()
    return bool(last) and all(last.get(key) == record[key] for key in keys)


# --- after it is committed: post it --------------------------------------------------------------------------


def post(pending: Pending) -> dict[str, Any]:
    """Post ``pending`` and answer the sync's record of it; never raises for what the provider or the network
    does."""
    if pending.request is None:
        log.info("commit status of %s not posted: %s", pending.record["commit"][:12], pending.record["detail"])
        return pending.record
    request = pending.request
    try:
        status, answer = _send(request, pending.policy)
    except RepoError as exc:  # the egress policy's refusal, or a host that does not resolve: plain already
        outcome, detail = "failed", str(exc)
    except httpx.TimeoutException as exc:
        log.info("commit status: %s timed out: %s", request.url, type(exc).__name__)
        outcome, detail = "failed", f"the API did not answer within {TIMEOUT:g} s"
    except httpx.HTTPError as exc:
        log.info("commit status: cannot post to %s: %s", request.url, exc)
        outcome = "failed"
        detail = UNTRUSTED if untrusted_certificate(exc) else f"cannot reach the API: {egress.UNREACHABLE}"
    else:
        outcome, detail = _judged(status)
        if outcome == "failed":
            log.info("commit status: %s answered %d: %s", request.url, status, _excerpt(answer, request.secrets))
    log.info("commit status %s of %s on %s: %s (%s)", pending.record["state"], pending.record["commit"][:12],
             pending.record["provider"], outcome, detail)
    return {**pending.record, "outcome": outcome, "detail": detail}


def _send(request: StatusRequest, policy: egress.EgressPolicy) -> tuple[int, bytes]:
    """The answer's status and its first bytes (at most MAX_ANSWER_BYTES)."""
    with httpx.Client(transport=CheckedTransport(policy), timeout=TIMEOUT, follow_redirects=False,
                      trust_env=False) as client:
        with client.stream("POST", request.url, json=request.body, headers=request.headers) as response:
            answer = b""
            for chunk in response.iter_raw():
                answer += chunk
                if len(answer) >= MAX_ANSWER_BYTES:
                    break
            return response.status_code, answer[:MAX_ANSWER_BYTES]


def _judged(status: int) -> tuple[str, str]:
    if 200 <= status < 300:
        return "posted", f"HTTP {status}"
    if 300 <= status < 400:
        return "failed", f"the API answered HTTP {status}, a redirect, which is not followed"
    hints = {401: "the token was not accepted", 403: "the token may not set commit statuses on this repository",
             404: "no such repository for this token, or the provider is another one (set commit_status)"}
    return "failed", f"the API answered HTTP {status}" + (f": {hints[status]}" if status in hints else "")


def _excerpt(answer: bytes, secrets: tuple[str, ...]) -> str:
    """The start of an answer for the log, with anything of the credentials it echoes taken out."""
    text = answer.decode("utf-8", "replace")
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())[:300]


__all__ = ["MODES", "TIMEOUT", "MAX_ANSWER_BYTES", "HOSTED", "Verdict", "StatusRequest", "NoStatus", "Pending",
           "mode", "provider_for", "verdict", "status_request", "prepare", "post"]
