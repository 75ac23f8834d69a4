"""The API client commands: ``login``, ``deploy``, ``rollback``, ``promote``, ``apps``, ``versions``.

They call the control plane's /api/v1 over httpx with an API token that
``shipyard login`` stores, with the server's URL, in
$XDG_CONFIG_HOME/shipyard/credentials.json (mode 0600). An API error
(webapp.errors: ``{"error": {"code", "message", "problems"}}``) becomes a
``Failure`` with the exit code of its kind (``failure_of``). Nothing here
imports the server stack: a client starts as fast as httpx and rich allow.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlsplit

import click
import httpx

from cli.contexts import CONTEXT_ENV, Contexts, context_option, selected_name, store
from cli.exits import (EXIT_CODES_HELP, EXIT_INTERNAL, EXIT_INVALID, EXIT_REPO, EXIT_UNAUTHORIZED, EXIT_USAGE,
                       Failure, exit_of)
from cli.output import output_option, print_json, print_table, shown, stderr
from cli.prompts import read_password
from cli.watch import show_apps, show_status, watch_option
from contract.errors import Problem, SpecError
from renderer.paths import expand_paths


# --- the API client: settings and credentials -------------------------------------------------------------


def read_credentials() -> dict:
    """The context this command uses (``--context``, SHIPYARD_CONTEXT or the current one): url, token and
    whose token it is; empty when nothing is stored."""
    return Contexts.load().selected(selected_name()) or {}


def _normalize_url(url: str) -> str:
    """The control plane's URL as stored and shown: http(s), no credentials, query or fragment in it."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError:
        raise click.BadParameter("the URL's port is not a number from 1 to 65535", param_hint="--url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", url):
        raise click.BadParameter("the control plane's URL is http(s)://HOST[:PORT][/PATH]", param_hint="--url")
    if parts.username is not None or parts.password is not None:
        raise click.BadParameter("the URL carries credentials; give the API token with --token or SHIPYARD_TOKEN "
                                 "(or log in), never in the URL", param_hint="--url")
    if parts.query or parts.fragment:
        raise click.BadParameter("the control plane's URL takes no query or fragment", param_hint="--url")
    return url


def verifies_tls(url: str) -> bool:
    """Whether the client loads the CA bundle and checks certificates: for an https:// server, always.

    For a plain http:// server (the embedded default, on loopback) there is no TLS to check,
    and loading the bundle anyway cost 50 ms, a sixth of a client command's CPU. The clients
    send every request to their base URL and follow no redirects, so an http:// client never
    reaches an https:// address.
    """
    return not url.startswith("http://")


@dataclass
class Client:
    """/api/v1 of one server, with one API token; every failure becomes a Failure with its exit code."""

    url: str
    token: str
    output: str = "text"

    def __post_init__(self) -> None:
        from importlib.metadata import version

        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(120.0, connect=10.0),
                                 verify=verifies_tls(self.url), headers={
            "Authorization": f"Bearer {self.token}", "User-Agent": f"shipyard-cli/{version('shipyard')}"})

    def send(self, method: str, path: str, **kwargs) -> httpx.Response:
        return _send(self.http, self.url, method, path, self.output, **kwargs)

    def call(self, method: str, path: str, *, filename: str | None = None, **kwargs) -> Any:
        response = self.send(method, path, **kwargs)
        if response.status_code >= 400:
            raise failure_of(response, self.output, filename)
        return response.json() if response.content else None


def _send(http: httpx.Client, url: str, method: str, path: str, output: str = "text", **kwargs) -> httpx.Response:
    try:
        return http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise Failure(f"cannot reach the control plane at {url}: {exc.__class__.__name__}: {exc}",
                      EXIT_REPO, kind="unreachable", output=output) from exc


def failure_of(response: httpx.Response, output: str, filename: str | None = None) -> Failure:
    """The exit code and message of an API error (webapp.errors: ``{"error": {"code", "message"}}``).

    The exit code follows the error's code, as for an error raised here. An answer that is not the
    control plane's (a proxy's error page) has none: a gateway error means the control plane could
    not be reached, anything else is unexpected."""
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code") or f"http_{response.status_code}")
    message = error.get("message") or f"{response.status_code} {response.reason_phrase}"
    problems = [Problem(p.get("file", filename or "<request>"), p.get("line", 0), p.get("column", 0),
                        p.get("message", ""), p.get("path", "")) for p in error.get("problems") or []]
    if "code" in error:
        exit_code = exit_of(code)
    else:
        exit_code = EXIT_REPO if response.status_code in (502, 503, 504) else EXIT_INTERNAL
    if code == "unauthorized":
        message += "; run `shipyard login` (or set SHIPYARD_TOKEN)"
    return Failure(message, exit_code, problems, kind=code, output=output)


def api_options(command):
    """--context, --url, --token and --output for the commands that call the API."""
    command = context_option(command)
    command = click.option("--token", envvar="SHIPYARD_TOKEN", show_envvar=True,
                           help="API token (default: the one `shipyard login` stored).")(command)
    command = click.option("--url", envvar="SHIPYARD_URL", show_envvar=True,
                           help="Control plane URL (default: the one `shipyard login` stored).")(command)
    return output_option(command)


def client(url: str | None, token: str | None, output: str) -> Client:
    """The API client of the server and token given, else of the context in use (kubectl's habit)."""
    stored = Contexts.load()
    name = selected_name()
    if url:
        url = _normalize_url(url)
    else:
        url = (stored.selected(name) or {}).get("url")
    if not url:
        raise Failure("no control plane URL: run `shipyard login --url URL`, or set SHIPYARD_URL", EXIT_USAGE,
                      output=output)
    if not token:
        token = stored.token_for(url, name)  # a stored token goes only to the server it was made for
    if not token:
        raise Failure(f"no API token for {url}: run `shipyard login --url {url}`, or set SHIPYARD_TOKEN",
                      EXIT_USAGE, output=output)
    return Client(url, token, output)


# --- shipyard login -------------------------------------------------------------------------------------------


class _CsrfField(HTMLParser):
    """Finds the value of the form's hidden ``csrf_token`` input."""

    def __init__(self) -> None:
        super().__init__()
        self.value: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        fields = dict(attrs)
        if tag == "input" and fields.get("name") == "csrf_token" and self.value is None:
            self.value = fields.get("value")


def _csrf_token(html: str) -> str | None:
    parser = _CsrfField()
    parser.feed(html)
    return parser.value


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--url", envvar="SHIPYARD_URL", show_envvar=True, help="Control plane URL.")
@click.option("--token", "given_token", help="Store this API token (for CI) instead of logging in.")
@click.option("--username", help="Local user (asked when not given).")
@click.option("--role", help="The token's role (default: the one role binding you hold, or tenant-admin).")
@click.option("--cluster", help="The token's cluster, for a cluster or workspace role.")
@click.option("--workspace", help="The token's workspace, for a workspace role.")
@click.option("--expires-in-days", default=90, show_default=True, type=click.IntRange(1, 366))
@click.option("--context", "context", help="Store it as this context (default: USER@HOST[/CLUSTER[:WORKSPACE]]).")
def login(url: str | None, given_token: str | None, username: str | None, role: str | None, cluster: str | None,
          workspace: str | None, expires_in_days: int, context: str | None) -> None:
    """Log in with a local user and store an API token for the other commands, as a context.

    The token is created through the web login (password never stored) and kept
    with the URL in $XDG_CONFIG_HOME/shipyard/credentials.json (~/.config by
    default), readable by you only, as a context that becomes the current one:
    log in once per server and role, then switch with `shipyard contexts use`.
    Holding one role binding, you get a token of it; holding several, choose
    with --role (--cluster, --workspace), or from a list on a terminal. The
    password is read from the terminal, or from stdin when that is not a terminal.
    """
    url = _normalize_url(url or read_credentials().get("url") or click.prompt("Control plane URL",
                                                                                default="http://127.0.0.1:8080"))
    if given_token:
        api = Client(url, given_token)
        whoami = api.call("GET", "/api/v1/me")
        name, path = store(url, given_token, _identity(whoami, _token_row(api, whoami.get("token_id"))), context)
        stderr.print(f"token of {shown(whoami['user']['username'])} for {shown(url)} stored in {shown(path)} "
                     f"as context {shown(name)}")
        return
    username = username or click.prompt("Username")
    password = read_password("Password")
    with web_session(url, username, password, "text") as session:
        me = session.call("GET", "/api/v1/me")
        if role is None:
            role, cluster, workspace = _chosen_grant(username, me["grants"], cluster, workspace)
        body = {"name": f"shipyard login on {socket.gethostname()}", "role": role,
                "expires_in_days": expires_in_days, "cluster": cluster, "workspace": workspace}
        created = session.call("POST", "/api/v1/tokens", json=body)
    name, path = store(url, created["token"], _identity(me, created), context)
    scope = f" on {cluster}" + (f":{workspace}" if workspace else "") if cluster else ""
    stderr.print(f"logged in to {shown(url)} as {shown(username)}; a {role}{shown(scope)} token "
                 f"(expires {created['expires_at'][:10]}) is stored in {shown(path)} as context {shown(name)}")


def _token_row(api: Client, token_id: int | None) -> dict | None:
    """The token as GET /tokens lists it (a token always sees itself): its role and scope."""
    return next((row for row in api.call("GET", "/api/v1/tokens")["tokens"] if row["id"] == token_id), None)


def _identity(me: dict, token: dict | None) -> dict:
    """Whose token a context holds: the user, and the token's role and scope when known."""
    identity = {"user": me["user"]["username"]}
    if token:
        identity.update({k: token.get(k) for k in ("role", "cluster", "workspace") if token.get(k)})
    return identity


def _grant_words(grant: dict) -> str:
    scope = (f" on {grant['cluster']}" + (f":{grant['workspace']}" if grant.get("workspace") else "")
             if grant.get("cluster") else "")
    return f"{grant['role']}{scope}"


def _chosen_grant(username: str, grants: list[dict], cluster: str | None,
                  workspace: str | None) -> tuple[str, str | None, str | None]:
    """The role (and scope) of the token when --role was not given: tenant-admin if held; else the one
    role binding held (within --cluster/--workspace when given); else chosen from a list on a terminal."""
    if cluster is None and any(g["role"] == "tenant-admin" and not g.get("cluster") for g in grants):
        return "tenant-admin", None, None
    fitting = [g for g in grants if (cluster is None or g.get("cluster") == cluster)
               and (workspace is None or g.get("workspace") == workspace)]
    if len(fitting) == 1:
        grant = fitting[0]
        return grant["role"], grant.get("cluster"), grant.get("workspace")
    if not fitting:
        held = ", ".join(_grant_words(g) for g in grants) or "no roles yet; ask a tenant-admin for a role binding"
        raise Failure(f"{username} holds no role there; what {username} holds: {held}", EXIT_USAGE)
    if not sys.stdin.isatty():
        raise Failure(f"{username} holds several roles; choose the token's --role (and --cluster, --workspace) "
                      f"from: {', '.join(_grant_words(g) for g in fitting)}", EXIT_USAGE)
    for number, grant in enumerate(fitting, 1):
        click.echo(f"  {number}. {_grant_words(grant)}", err=True)
    picked = fitting[click.prompt("The token's role", type=click.IntRange(1, len(fitting)), err=True) - 1]
    return picked["role"], picked.get("cluster"), picked.get("workspace")


@dataclass
class WebSession:
    """A logged-in web session: what only a person's login may do (an API token cannot make tokens)."""

    http: httpx.Client
    url: str
    csrf: str
    output: str

    def call(self, method: str, path: str, **kwargs) -> Any:
        response = _send(self.http, self.url, method, path, self.output, headers={"X-CSRFToken": self.csrf},
                         **kwargs)
        if response.status_code >= 400:
            raise failure_of(response, self.output)
        return response.json() if response.content else None


@contextmanager
def web_session(url: str, username: str, password: str, output: str) -> Iterator[WebSession]:
    """A logged-in web session of ``username`` at ``url``, logged out when the block ends; the password
    is sent once, to the login form."""
    with httpx.Client(base_url=url, timeout=httpx.Timeout(60.0, connect=10.0), verify=verifies_tls(url)) as http:
        page = _send(http, url, "GET", "/login")
        csrf = _csrf_token(page.text) if page.status_code == 200 else None
        if csrf is None:
            raise Failure(f"{url}/login did not serve the login form ({page.status_code}); is that a Shipyard "
                          "control plane?", EXIT_INTERNAL, output=output)
        response = _send(http, url, "POST", "/login", data={"csrf_token": csrf, "username": username,
                                                            "password": password})
        if response.status_code == 401:
            raise Failure("wrong username or password", EXIT_UNAUTHORIZED, kind="unauthorized", output=output)
        if response.status_code not in (302, 303):
            raise failure_of(response, output)
        # a login starts a new session with a new CSRF secret: take the token a logged-in page carries
        account = _send(http, url, "GET", "/account")
        if account.status_code >= 400:
            raise failure_of(account, output)
        csrf = _csrf_token(account.text)
        if csrf is None:
            raise Failure(f"{url}/account carries no CSRF token after the login", EXIT_INTERNAL, output=output)
        try:
            yield WebSession(http, url, csrf, output)
        finally:
            _send(http, url, "POST", "/logout", data={"csrf_token": csrf})


@click.command(epilog=EXIT_CODES_HELP)
@context_option
@click.option("--keep-token", is_flag=True, help="Forget the context here without revoking its token.")
def logout(keep_token: bool) -> None:
    """Revoke the token of the context in use (--context, or the current one) and forget the context."""
    stored = Contexts.load()
    name = selected_name() or os.environ.get(CONTEXT_ENV) or stored.current
    entry = stored.selected(name)
    if entry is None:
        raise Failure("not logged in: no context is current (see `shipyard contexts`)", EXIT_USAGE)
    said = "forgotten; its token stays valid until it expires"
    if not keep_token:
        api = Client(entry["url"], entry["token"])
        me = api.send("GET", "/api/v1/me")
        if me.status_code == 401:
            said = "forgotten; its token was no longer valid"
        elif me.status_code >= 400:
            raise failure_of(me, "text")
        else:
            api.call("DELETE", f"/api/v1/tokens/{me.json()['token_id']}")
            said = "forgotten and its token revoked"
    del stored.contexts[name]
    if stored.current == name:
        stored.current = None
    stored.save()
    stderr.print(f"context {shown(name)} ({shown(entry['url'])}) {said}")


# --- shipyard deploy / rollback / promote / apps / versions --------------------------------------------------------

APP_REF = re.compile(r"^(?P<cluster>[^:/\s]+):(?P<workspace>[^:/\s]+)/(?P<app>[^:/\s]+)$")


def app_path(ref: str) -> str:
    match = APP_REF.match(ref)
    if not match:
        raise click.BadParameter(f"{ref!r}: write the app as CLUSTER:WORKSPACE/APP", param_hint="APP")
    return "/api/v1/apps/" + "/".join(quote(match[part], safe="") for part in ("cluster", "workspace", "app"))


def _versions_table(versions: list[dict]) -> None:
    print_table(("APP", "VERSION", "ACTION", "STATE", "COMMIT"), (
        (v["app"], str(v["number"]), v["action"], _state(v), (v.get("commit") or "-")[:12]) for v in versions))
    for version in versions:
        if version.get("unchanged"):
            stderr.print(f"{shown(version['app'])}: unchanged; version {version['number']} already deploys this "
                         "spec, no new version made")
        for note in version.get("notes") or []:
            stderr.print(f"[yellow]note:[/yellow] {shown(version['app'])}: {shown(note)}")
        if version["state"] == "pending":
            stderr.print(f"{shown(version['app'])} v{version['number']}: accepted; the repository could not be written "
                         "now, the reconciler commits it")
        elif version["state"] == "failed":
            stderr.print(f"[red]failed:[/red] {shown(version['app'])} v{version['number']}: {shown(version.get('error'))}")


def _state(version: dict) -> str:
    if version.get("unchanged"):
        return "unchanged"
    if version["state"] == "committed" and version.get("changed") is False:
        return "committed (no change)"
    return version["state"]


def _exit_if_failed(versions: list[dict], output: str) -> None:
    """A version that failed in the repository (e.g. a Service name clash) fails the command."""
    failed = [v for v in versions if v["state"] == "failed"]
    if not failed:
        return
    if output == "json":
        sys.exit(EXIT_INVALID)  # the document already printed says which, with their errors
    raise Failure(f"{len(failed)} version(s) failed", EXIT_INVALID, kind="failed")


class Duration(click.ParamType):
    """A duration: 90, 90s, 10m or 1h."""

    name = "duration"
    _UNITS = {"s": 1, "m": 60, "h": 3600}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        unit = self._UNITS.get(text[-1:], None)
        number = text[:-1] if unit else text
        try:
            seconds = float(number) * (unit or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration such as 90s, 10m or 1h", param, ctx)
        if not 0 < seconds <= 24 * 3600:
            self.fail(f"{value!r}: a wait lasts more than 0 s and at most 24h", param, ctx)
        return seconds


def wait_options(command):
    command = click.option("--timeout", type=Duration(), default="10m", show_default=True,
                           help="With --wait: how long to wait (90s, 10m, 1h).")(command)
    return click.option("--wait", is_flag=True,
                        help="Follow each new version until its cluster runs it (Healthy; a job: synced); "
                             "exit 8 sync failed, 9 degraded, 10 timed out, 11 agent not reporting.")(command)


def _waited(api, versions: list[dict], wait: bool, timeout: float, output: str) -> None:
    if wait:
        from cli.wait import raise_for, wait_for

        raise_for(wait_for(api, versions, timeout, output), output)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("files", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would change, as diffs; change nothing.")
@click.option("--source-commit", help="Commit of the spec repository this deploy comes from.")
@wait_options
@api_options
def deploy(files: tuple[str, ...], dry_run: bool, source_commit: str | None, wait: bool, timeout: float, url, token,
           output: str) -> None:
    """Deploy spec FILES (or directories of them) through the control plane; one request per file.

    Prints each new version (app, number, state, commit), or with --dry-run the diff
    of what would change. Spec problems are printed as FILE:LINE:COL: message. With
    --wait, follows the new versions until their clusters run them (a pipeline step
    that fails on a broken release).
    """
    api = client(url, token, output)
    results, first_failure = [], None
    for path in expand_paths(files):
        try:
            data = path.read_bytes()
        except OSError as exc:
            failure = Failure(f"cannot read {path}", EXIT_INVALID,
                              [Problem(str(path), 0, 0, f"cannot read file: {exc.strerror}")], "invalid", output)
        else:
            params = {"filename": str(path), "source": "cli", "dry_run": "true" if dry_run else "false"}
            if source_commit:
                params["source_commit"] = source_commit
            try:
                body = api.call("PUT", "/api/v1/apps", filename=str(path), content=data, params=params,
                                headers={"Content-Type": "application/yaml"})
            except Failure as exc:
                if exc.exit_code in (EXIT_UNAUTHORIZED, EXIT_REPO) and exc.kind != "repo_unavailable":
                    raise  # no use trying the other files
                failure = exc
            else:
                failure = None
                results.append({"file": str(path), "ok": True, **body})
                if output == "text":
                    _show_deploy(body)
        if failure is not None:
            results.append({"file": str(path), "ok": False, "error": failure.kind, "message": failure.message,
                            "problems": [p.as_dict() for p in failure.problems]})
            if output == "text":
                failure.show()
            first_failure = first_failure or failure
    created = [v for r in results for v in r.get("versions", [])]
    if output == "json" and not (wait and not dry_run):
        ok = first_failure is None and all(v["state"] != "failed" for v in created)
        print_json({"ok": ok, "dry_run": dry_run, "files": results})
    if first_failure is not None:
        sys.exit(first_failure.exit_code)
    _exit_if_failed(created, output)
    _waited(api, created, wait and not dry_run, timeout, output)


def _show_deploy(body: dict) -> None:
    if not body.get("dry_run"):
        _versions_table(body["versions"])
        return
    for change in body["apps"]:
        stderr.print(f"{shown(change['app'])}: {shown(change['action'])}")
        for note in change.get("notes") or []:
            stderr.print(f"[yellow]note:[/yellow] {shown(change['app'])}: {shown(note)}")
        if change["diff"]:
            click.echo(change["diff"], nl=not change["diff"].endswith("\n"))


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.argument("version", type=click.IntRange(1))
@wait_options
@api_options
def rollback(app: str, version: int, wait: bool, timeout: float, url, token, output: str) -> None:
    """Deploy APP (CLUSTER:WORKSPACE/APP) as it was at VERSION; a new version records it."""
    api = client(url, token, output)
    created = api.call("POST", f"{app_path(app)}/rollback", json={"version": version, "source": "cli"})
    _show_versions([created], output, quiet=wait)
    _waited(api, [created], wait, timeout, output)


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """``a.b=value`` pairs as a nested dict; values are YAML (``3`` is a number, ``null`` removes the field)."""
    overrides: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE, KEY may be dotted (resources.cpu_limit=2)",
                                     param_hint="--set")
        try:
            from renderer.yamlio import load_documents  # promote --set only: the YAML libraries load here

            documents = load_documents(raw, f"--set {key}")
        except SpecError as exc:
            raise click.BadParameter(f"{pair!r}: {exc.problems[0].message}", param_hint="--set") from exc
        value = documents[0].data if documents else None
        target = overrides
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise click.BadParameter(f"{pair!r}: {part} is set to a value already", param_hint="--set")
        target[parts[-1]] = value
    return overrides


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.option("--to", "target", required=True, help="CLUSTER:WORKSPACE to promote into.")
@click.option("--version", "number", type=click.IntRange(1), help="The version to promote (default: current).")
@click.option("--name", help="The app's name in the target (default: the same).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Change a field of the spec, e.g. --set replicas=3 --set env.LOG_LEVEL=debug (repeatable).")
@click.option("--keep-overrides/--no-keep-overrides", default=True, show_default=True,
              help="Apply again the overrides the target app was promoted with, under these --set ones.")
@wait_options
@api_options
def promote(app: str, target: str, number: int | None, name: str | None, settings: tuple[str, ...],
            keep_overrides: bool, wait: bool, timeout: float, url, token, output: str) -> None:
    """Deploy a version of APP (CLUSTER:WORKSPACE/APP) into another workspace or cluster."""
    if target.count(":") != 1 or not all(target.split(":")):
        raise click.BadParameter(f"{target!r}: write the target as CLUSTER:WORKSPACE", param_hint="--to")
    body: dict[str, Any] = {"target": target, "source": "cli", "overrides": parse_overrides(settings),
                            "keep_overrides": keep_overrides}
    if number is not None:
        body["version"] = number
    if name is not None:
        body["name"] = name
    api = client(url, token, output)
    created = api.call("POST", f"{app_path(app)}/promote", json=body)
    _show_versions([created], output, quiet=wait)
    _waited(api, [created], wait, timeout, output)


def _show_versions(versions: list[dict], output: str, quiet: bool = False) -> None:
    """The versions made, as a table (or one JSON document, unless a --wait prints its own)."""
    if output == "json":
        if not quiet:
            print_json({"ok": True, "versions": versions})
    else:
        _versions_table(versions)
    _exit_if_failed(versions, output)


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--cluster", help="Only this cluster's apps.")
@click.option("--workspace", help="Only this workspace's apps (with --cluster).")
@watch_option
@api_options
def apps(cluster: str | None, workspace: str | None, watch: bool, url, token, output: str) -> None:
    """List the apps you may read: health and sync as their clusters report them, live and newest version."""
    show_apps(client(url, token, output), cluster, workspace, output, watch)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@api_options
def versions(app: str, limit: int, url, token, output: str) -> None:
    """List the versions of APP (CLUSTER:WORKSPACE/APP), newest first."""
    api = client(url, token, output)
    rows = api.call("GET", f"{app_path(app)}/versions", params={"limit": limit})["versions"]
    if output == "json":
        print_json({"versions": rows})
        return
    print_table(("VERSION", "ACTION", "STATUS", "COMMIT", "AUTHOR", "SOURCE", "CREATED"), (
        (str(row["number"]), row["action"], _version_status(row),
         "-" if row.get("changed") is False else (row.get("commit") or "-")[:12],
         row["author"], row["source"], (row["created_at"] or "")[:19]) for row in rows))
    for row in rows:
        if row.get("status") in ("failed", "degraded") and row.get("status_message"):
            stderr.print(f"[red]v{row['number']} {row['status']}:[/red] {shown(row['status_message'])}")


def _version_status(row: dict) -> str:
    """What the cluster says of a version (healthy, degraded, failed, ...), or its state before any report."""
    status = row.get("status") or row["state"]
    if row.get("changed") is False and status in ("committed", "replaced"):
        return f"{status} (no change)"
    return status


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@watch_option
@api_options
def status(app: str, watch: bool, url, token, output: str) -> None:
    """Show APP's (CLUSTER:WORKSPACE/APP) live status: health, sync, live and newest version, pods and why."""
    show_status(client(url, token, output), app_path(app), output, watch)
