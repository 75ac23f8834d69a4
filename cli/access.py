"""Who may do what: ``shipyard users``, ``bindings``, ``tokens`` and ``audit``, through /api/v1.

Each of the first three is a click group whose bare word lists, kubectl's way, with
sub-commands that change one; ``audit`` reads the audit log, newest first.

=======================================================  =========================================
command                                                  API
=======================================================  =========================================
users  |  users create USERNAME                          GET, POST /users
bindings  |  bindings create SUBJECT ROLE  |  delete ID  GET, POST /role-bindings, DELETE .../<id>
tokens  |  tokens create NAME --role R  |  revoke ID     GET, POST /tokens, DELETE /tokens/<id>
audit [--limit N] [--before ID]                          GET /audit
=======================================================  =========================================

Passwords are never flags: ``users create`` asks for the new user's password without
echo, or reads it from stdin's first line (cli.prompts). API tokens cannot make tokens
(the server refuses), so ``tokens create`` logs in to the web session with the user's
password, as ``shipyard login`` does, makes the token and logs out; the token is printed
on stdout this once, and Shipyard keeps only its hash.
"""

from __future__ import annotations

import datetime as dt

import click

from cli.client import api_options, client, web_session
from cli.exits import EXIT_CODES_HELP, EXIT_NOT_FOUND, EXIT_USAGE, Failure
from cli.output import note, print_json, print_table, say
from cli.prompts import confirm, read_password, yes_option


def _where(row: dict) -> str:
    """The scope of a binding or token as people write it: CLUSTER:WORKSPACE, CLUSTER, or the tenant."""
    if row.get("workspace"):
        return f"{row['cluster']}:{row['workspace']}"
    return row.get("cluster") or "(tenant)"


def _time(value: str | None, missing: str = "-") -> str:
    return value[:19] if value else missing


def _scope_fields(cluster: str | None, workspace: str | None) -> dict:
    if workspace and not cluster:
        raise click.UsageError("--workspace needs --cluster: a workspace is CLUSTER:WORKSPACE")
    return {"cluster": cluster, "workspace": workspace}


def scope_options(command):
    """--cluster and --workspace: where a binding or a token acts (neither: the whole tenant)."""
    command = click.option("--workspace", help="On this workspace of --cluster.")(command)
    return click.option("--cluster", help="On this cluster (default: the whole tenant).")(command)


# --- shipyard users ---------------------------------------------------------------------------------------


def _print_users(users: list[dict]) -> None:
    print_table(("USER", "NAME", "EMAIL", "LOGIN", "GROUPS", "ACTIVE", "LAST LOGIN"), (
        (u["username"], u.get("display_name") or "-", u.get("email") or "-", u["login"],
         ",".join(u.get("groups") or []) or "-", "yes" if u["active"] else "no", _time(u.get("last_login_at"), "never"))
        for u in users))


@click.group("users", invoke_without_command=True, epilog=EXIT_CODES_HELP)
@api_options
@click.pass_context
def users_group(ctx: click.Context, url, token, output: str) -> None:
    """List the tenant's users (the bare command), or create a local one."""
    if ctx.invoked_subcommand is not None:
        return
    users = client(url, token, output).call("GET", "/api/v1/users")["users"]
    if output == "json":
        print_json({"users": users})
        return
    _print_users(users)


@users_group.command("create", epilog=EXIT_CODES_HELP)
@click.argument("username")
@click.option("--display-name", help="The name people see.")
@click.option("--email")
@api_options
def create_user(username: str, display_name: str | None, email: str | None, url, token, output: str) -> None:
    """Create the local user USERNAME, who logs in with the password you give.

    The password is asked twice without echo on a terminal, else read from stdin's
    first line. The user holds no role until `shipyard bindings create` gives one.
    """
    api = client(url, token, output)  # a missing login fails before the password is asked
    password = read_password(f"Password for {username}", twice=True)
    if not password:
        raise Failure("no password given (type it, or pipe it in as the first line of stdin)", EXIT_USAGE,
                      output=output)
    body = {"username": username, "password": password, "display_name": display_name, "email": email}
    created = api.call("POST", "/api/v1/users", json={k: v for k, v in body.items() if v is not None})
    if output == "json":
        print_json(created)
        return
    _print_users([created])
    say(f"user {username}; give them a role: shipyard bindings create {username} ROLE", label="created")


# --- shipyard bindings -------------------------------------------------------------------------------------


def _print_bindings(bindings: list[dict]) -> None:
    print_table(("ID", "ROLE", "SUBJECT", "WHERE", "BY", "CREATED"), (
        (str(b["id"]), b["role"], f"{b['subject_kind']}:{b['subject']}", _where(b), b.get("created_by") or "-",
         _time(b.get("created_at"))) for b in bindings))


def _list_bindings(api) -> list[dict]:
    return api.call("GET", "/api/v1/role-bindings")["role_bindings"]


@click.group("bindings", invoke_without_command=True, epilog=EXIT_CODES_HELP)
@api_options
@click.pass_context
def bindings_group(ctx: click.Context, url, token, output: str) -> None:
    """List the role bindings you may read (the bare command), or grant a role or take one back.

    A binding gives a user (or an identity-provider group) a role on the whole
    tenant, a cluster or a workspace.
    """
    if ctx.invoked_subcommand is not None:
        return
    bindings = _list_bindings(client(url, token, output))
    if output == "json":
        print_json({"role_bindings": bindings})
        return
    _print_bindings(bindings)


@bindings_group.command("create", epilog=EXIT_CODES_HELP)
@click.argument("subject")
@click.argument("role")
@scope_options
@click.option("--group", "kind", flag_value="group", help="SUBJECT is an identity-provider group, not a user.")
@click.option("--repo", "kind", flag_value="repo",
              help="SUBJECT is a spec repository (`shipyard repos`): where it may deploy.")
@api_options
def create_binding(subject: str, role: str, cluster: str | None, workspace: str | None, kind: str | None, url, token,
                   output: str) -> None:
    """Give SUBJECT (a user; a group with --group; a spec repository with --repo) ROLE, e.g. workspace-editor,
    where --cluster/--workspace say."""
    body = {"subject": subject, "subject_kind": kind or "user", "role": role, **_scope_fields(cluster, workspace)}
    created = client(url, token, output).call("POST", "/api/v1/role-bindings", json=body)
    if output == "json":
        print_json(created)
        return
    _print_bindings([created])
    say(f"{created['subject_kind']} {subject} now holds {role} at {_where(created)}", label="granted")


@bindings_group.command("delete", epilog=EXIT_CODES_HELP)
@click.argument("binding_id", metavar="ID", type=click.IntRange(1))
@yes_option
@api_options
def delete_binding(binding_id: int, yes: bool, url, token, output: str) -> None:
    """Take back the role binding ID (the ID column of `shipyard bindings`)."""
    api = client(url, token, output)
    binding = next((b for b in _list_bindings(api) if b["id"] == binding_id), None)
    if binding is None:
        raise Failure(f"no role binding {binding_id}", EXIT_NOT_FOUND, kind="not_found", output=output)
    holder, held = f"{binding['subject_kind']} {binding['subject']}", f"{binding['role']} at {_where(binding)}"
    confirm(f"remove role binding {binding_id}", f"Then {holder} no longer holds {held}.", yes, output)
    api.call("DELETE", f"/api/v1/role-bindings/{binding_id}")
    if output == "json":
        print_json({"ok": True, "deleted": binding})
        return
    say(f"{holder} no longer holds {held}", label="removed")


# --- shipyard tokens ---------------------------------------------------------------------------------------


def _token_state(token: dict, now: dt.datetime) -> str:
    if token.get("revoked_at"):
        return "Revoked"
    if token.get("expires_at") and dt.datetime.fromisoformat(token["expires_at"]) <= now:
        return "Expired"
    return "Active"


def _print_tokens(tokens: list[dict]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    print_table(("ID", "NAME", "USER", "ROLE", "WHERE", "STATE", "EXPIRES", "LAST USED"), (
        (str(t["id"]), t["name"], t["user"], t["role"], _where(t), _token_state(t, now),
         (t.get("expires_at") or "never")[:10], _time(t.get("last_used_at"), "never")) for t in tokens))


@click.group("tokens", invoke_without_command=True, epilog=EXIT_CODES_HELP)
@api_options
@click.pass_context
def tokens_group(ctx: click.Context, url, token, output: str) -> None:
    """List API tokens (the bare command), make one, or revoke one.

    A tenant-admin's token lists every token of the tenant; any other token lists itself.
    """
    if ctx.invoked_subcommand is not None:
        return
    tokens = client(url, token, output).call("GET", "/api/v1/tokens")["tokens"]
    if output == "json":
        print_json({"tokens": tokens})
        return
    _print_tokens(tokens)


@tokens_group.command("create", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--role", required=True, help="The token's role, one you hold where it acts (e.g. workspace-editor).")
@scope_options
@click.option("--expires-in-days", default=90, show_default=True, type=click.IntRange(1, 366))
@click.option("--username", help="Whose token (default: the user of the API token in use).")
@api_options
def create_token(name: str, role: str, cluster: str | None, workspace: str | None, expires_in_days: int,
                 username: str | None, url, token, output: str) -> None:
    """Make an API token NAME (for CI, say) acting as ROLE; it is printed on stdout, only this once.

    An API token cannot make tokens, so this logs in with your password (asked without
    echo, or stdin's first line), as `shipyard login` does, at the server of the API
    token in use.
    """
    body = {"name": name, "role": role, "expires_in_days": expires_in_days, **_scope_fields(cluster, workspace)}
    api = client(url, token, output)
    username = username or api.call("GET", "/api/v1/me")["user"]["username"]
    password = read_password(f"Password of {username}")
    with web_session(api.url, username, password, output) as session:
        created = session.call("POST", "/api/v1/tokens", json=body)
    if output == "json":
        print_json(created)
        return
    click.echo(created["token"])
    note(name, f"a {role} token on {_where(created)} of {username}, expiring {created['expires_at'][:10]}, with id "
               f"{created['id']}; it is shown only this once (Shipyard keeps its hash)")


@tokens_group.command("revoke", epilog=EXIT_CODES_HELP)
@click.argument("token_id", metavar="ID", type=click.IntRange(1))
@api_options
def revoke_token(token_id: int, url, token, output: str) -> None:
    """Revoke the API token ID (the ID column of `shipyard tokens`): it stops working at once."""
    client(url, token, output).call("DELETE", f"/api/v1/tokens/{token_id}")
    if output == "json":
        print_json({"ok": True, "revoked": token_id})
        return
    say(f"token {token_id}: it no longer works", label="revoked")


# --- shipyard audit ----------------------------------------------------------------------------------------


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="How many, newest first.")
@click.option("--before", "before_id", type=click.IntRange(1), metavar="ID",
              help="Only events older than event ID (the next page: the last ID shown).")
@api_options
def audit(limit: int, before_id: int | None, url, token, output: str) -> None:
    """Show the audit log, newest first: who changed what, when."""
    params = {"limit": limit, **({"before": before_id} if before_id else {})}
    events = client(url, token, output).call("GET", "/api/v1/audit", params=params)["events"]
    if output == "json":
        print_json({"events": events})
        return
    print_table(("ID", "TIME", "ACTOR", "ACTION", "TARGET"), (
        (str(e["id"]), _time(e["at"]), e["actor"], e["action"], e["target"] or "-") for e in events))
    if len(events) == limit and events[-1]["id"] > 1:
        say(f"older events: shipyard audit --before {events[-1]['id']}")


__all__ = ["users_group", "bindings_group", "tokens_group", "audit"]
