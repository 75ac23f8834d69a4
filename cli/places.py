"""Where apps run: ``shipyard clusters`` and ``shipyard workspaces``, through /api/v1.

Each is a click group whose bare word lists, kubectl's way (``shipyard clusters``), and whose
sub-commands act on one: a cluster is written NAME, a workspace CLUSTER:WORKSPACE.

==============================================  ================================================
command                                         API
==============================================  ================================================
clusters                                        GET /clusters, and each one's /status
clusters show NAME                              GET /clusters/<c> and /clusters/<c>/status
clusters register NAME --profile FILE           POST /clusters (its tokens shown once)
clusters install-agent NAME                     GET /clusters/<c>: its profile, its repository
clusters rotate-token NAME [--kind agent|read]  POST /clusters/<c>/tokens/<kind> (shown once)
clusters delete NAME                            DELETE /clusters/<c>
workspaces [--cluster C]                        GET /clusters/<c>/workspaces, for each cluster
workspaces create|update CLUSTER:WORKSPACE      POST /clusters/<c>/workspaces, PATCH .../<w>
workspaces delete CLUSTER:WORKSPACE             DELETE /clusters/<c>/workspaces/<w>
==============================================  ================================================

The install steps are built here from the cluster's profile and the address of its
repository on the server the command talks to (renderer.install_steps), the same steps
the dashboard shows; they are printed as a shell script whose comments say what each step
is for. A token appears in them only where the answer that made it is printed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import click

from cli.client import api_options, client
from cli.exits import EXIT_CODES_HELP, EXIT_INVALID, Failure
from cli.output import note, print_json, print_table, say
from cli.prompts import confirm, yes_option
from contract.errors import Problem

if TYPE_CHECKING:
    from renderer.install_steps import InstallSteps
    from renderer.profiles import ClusterProfile

# --- shipyard clusters --------------------------------------------------------------------------------------


def _cluster_path(name: str) -> str:
    return f"/api/v1/clusters/{quote(name, safe='')}"


def _counts(counted: dict) -> str:
    """``{"Healthy": 2, None: 1}`` as ``2 Healthy, 1 not reported``."""
    return ", ".join(f"{number} {what or 'not reported'}" for what, number in
                     sorted(counted.items(), key=lambda item: str(item[0]))) or "-"


def _agent(status: dict) -> str:
    return status["connectivity"] + (" (simulated)" if status.get("simulated") else "")


@click.group("clusters", invoke_without_command=True, epilog=EXIT_CODES_HELP)
@api_options
@click.pass_context
def clusters_group(ctx: click.Context, url, token, output: str) -> None:
    """List the clusters you may read and their agents (the bare command), or act on one.

    AGENT is online, stale or offline by when the cluster's agent was last heard
    from (LAST SEEN: never, when no agent has connected yet).
    """
    if ctx.invoked_subcommand is not None:
        return
    api = client(url, token, output)
    rows = [{**cluster, "status": api.call("GET", f"{_cluster_path(cluster['name'])}/status")}
            for cluster in api.call("GET", "/api/v1/clusters")["clusters"]]
    if output == "json":
        print_json({"clusters": rows})
        return
    print_table(("CLUSTER", "AGENT", "LAST SEEN", "KUBERNETES", "APPS", "REMOTE"), (
        (row["name"], _agent(row["status"]), (row["last_seen_at"] or "never")[:19],
         (row["status"]["agent"] or {}).get("kubernetes_version") or "-", _counts(row["status"]["apps"]["health"]),
         row["remote_url"] or "-") for row in rows))


@clusters_group.command("show", epilog=EXIT_CODES_HELP)
@click.argument("name")
@api_options
def show_cluster(name: str, url, token, output: str) -> None:
    """Show cluster NAME: its agent (connectivity, versions, addons, what it cannot watch), apps and repository."""
    api = client(url, token, output)
    cluster = api.call("GET", _cluster_path(name))
    status = api.call("GET", f"{_cluster_path(name)}/status")
    if output == "json":
        print_json({**cluster, "status": status})
        return
    agent = status["agent"] or {}
    facts = (
        ("cluster", cluster["name"]),
        ("agent", _agent(status) + f", last heard {(status['last_seen_at'] or 'never')[:19]}"),
        ("agent version", agent.get("agent_version") or "not connected"),
        ("kubernetes", agent.get("kubernetes_version") or "not reported"),
        ("addons found", ", ".join(agent.get("addons") or []) or "none reported"),
        ("objects followed", _counts(status["objects"])),
        ("apps", _counts(status["apps"]["health"])),
        ("commands waiting", str(status["commands_pending"])),
        ("repository", api.url + cluster["git_path"]),
        ("remote", f"{cluster['remote_url']} ({cluster['remote_auth']})" if cluster["remote_url"] else "none"),
    )
    print_table(("", ""), facts, header=False)
    for fault in agent.get("watch_faults") or []:
        where = f" in {fault['namespace']}" if fault.get("namespace") else ""
        note(name, f"the agent cannot watch {fault['kind']}{where}: {fault['reason']}"
                   + (f": {fault['message']}" if fault.get("message") else ""))


def _profile_text(path: Path, output: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        problem = f"cannot read cluster profile: {exc.strerror}"
    except UnicodeDecodeError as exc:
        problem = f"the cluster profile is not UTF-8 (byte {exc.start})"
    raise Failure(f"cannot read {path}", EXIT_INVALID, [Problem(str(path), 0, 0, problem)], "invalid", output)


@clusters_group.command("register", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--profile", "profile_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The cluster profile YAML (its name: is NAME).")
@api_options
def register_cluster(name: str, profile_path: Path, url, token, output: str) -> None:
    """Register cluster NAME from its profile, and print how to install it.

    The server writes the bootstrap into the cluster's new repository and makes its
    read token (ArgoCD's) and agent token, shown only this once: they are printed with
    the install steps, a shell script on stdout. Profile problems are printed as
    FILE:LINE:COL: message.
    """
    text = _profile_text(profile_path, output)
    api = client(url, token, output)
    try:
        created = api.call("POST", "/api/v1/clusters", json={"name": name, "profile": text})
    except Failure as failure:
        # the server names the profile "profile": its lines and columns are those of FILE
        failure.problems = [dataclasses.replace(p, file=str(profile_path)) if p.file == "profile" else p
                            for p in failure.problems]
        raise
    steps = _install_steps(api, created, _profile(created), created["read_token"], created["agent_token"])
    if output == "json":
        print_json({**created, "install": dataclasses.asdict(steps)})
        return
    say(f"cluster {name}: its repository holds the bootstrap. Its two tokens are below, shown only this once "
        "(Shipyard keeps their hashes; `shipyard clusters rotate-token` makes new ones).", label="registered")
    click.echo(f"# read token (ArgoCD reads the cluster repository with it): {created['read_token']}\n"
               f"# agent token (the agent reports the cluster's state with it): {created['agent_token']}")
    _print_steps(steps)


def _profile(cluster: dict) -> ClusterProfile:
    """The cluster's profile, as the server keeps it (the renderer's libraries load here, when it is needed)."""
    from renderer.profiles import load_profile_text

    return load_profile_text(cluster["profile"], f"cluster {cluster['name']} profile")


def _install_steps(api, cluster: dict, profile: ClusterProfile, read_token: str | None = None,
                   agent_token: str | None = None) -> InstallSteps:
    """The cluster's install steps, with its tokens where they are known (else READ_TOKEN, AGENT_TOKEN)."""
    from renderer.install_steps import AGENT_TOKEN, READ_TOKEN, install_steps

    return install_steps(cluster["name"], profile, api.url + cluster["git_path"], read_token or READ_TOKEN,
                         agent_token or AGENT_TOKEN)


def _print_steps(steps: InstallSteps) -> None:
    """The install steps as a shell script: each step's command lines under a comment saying what it is for."""
    lines = ["# 1. Let ArgoCD read the cluster repository."]
    if steps.repository_secret:
        lines += [f"#    Its Applications name {steps.repo_url} (the profile's git.repo_url); this repository "
                  "Secret gives ArgoCD the read token for it:",
                  "kubectl apply -f - <<'EOF'", steps.repository_secret.rstrip("\n"), "EOF"]
    else:
        lines.append(f"#    The profile's git.repo_url is {steps.repo_url}, not this control plane's "
                     f"{steps.served_url}: give ArgoCD the credentials of that repository (the read token opens "
                     f"only {steps.served_url}).")
    lines += [f"# 2. Apply the root Application, once, from the repository as ArgoCD reads it (no -n: the file "
              f"names ArgoCD's namespace, {steps.argocd_namespace}). ArgoCD then syncs bootstrap/ itself.",
              steps.clone, steps.apply_root, "# 3. Give the agent its token."]
    if steps.agent_secret:
        lines += [f"#    Once ArgoCD has made the namespace {steps.agent_namespace} (from bootstrap/agent/), put "
                  "the token into the Secret the agent mounts; its pod waits for it:", steps.agent_secret]
    elif steps.agent_token_ref:
        lines.append(f"#    External Secrets makes the agent's Secret from the profile's agent.token_ref: store the "
                     f"agent token at {steps.agent_token_ref} in the secret store.")
    else:
        lines.append("#    The profile has no agent section, so no agent is installed and no status comes back "
                     "from this cluster. Add one (agent: {url: <this control plane>}), then give it the agent token.")
    click.echo("\n".join(lines))


@clusters_group.command("install-agent", epilog=EXIT_CODES_HELP)
@click.argument("name")
@api_options
def install_agent(name: str, url, token, output: str) -> None:
    """Print the steps that put cluster NAME under Shipyard: ArgoCD's access, the root Application, the agent's token.

    READ_TOKEN and AGENT_TOKEN stand for the tokens shown when the cluster was
    registered, or for new ones from `shipyard clusters rotate-token`.
    """
    api = client(url, token, output)
    cluster = api.call("GET", _cluster_path(name))
    steps = _install_steps(api, cluster, _profile(cluster))
    if output == "json":
        print_json({"cluster": name, "install": dataclasses.asdict(steps)})
        return
    note(name, "READ_TOKEN and AGENT_TOKEN stand for the tokens shown when the cluster was registered, or for new "
               "ones from `shipyard clusters rotate-token`")
    _print_steps(steps)


_ROTATION = {
    "agent": "The current agent token keeps working for SHIPYARD_AGENT_TOKEN_GRACE (an hour by default), then stops.",
    "read": "The current read token stops working at once: ArgoCD cannot fetch until it has the new one.",
}


@clusters_group.command("rotate-token", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--kind", type=click.Choice(["agent", "read"]), default="agent", show_default=True,
              help="agent: the token the agent reports with; read: the token ArgoCD reads the repository with.")
@yes_option
@api_options
def rotate_token(name: str, kind: str, yes: bool, url, token, output: str) -> None:
    """Make a new agent or read token for cluster NAME; it is printed on stdout, only this once."""
    api = client(url, token, output)
    cluster = api.call("GET", _cluster_path(name))
    confirm(f"make a new {kind} token for cluster {name}", _ROTATION[kind], yes, output)
    answer = api.call("POST", f"{_cluster_path(name)}/tokens/{kind}")
    if output == "json":
        print_json(answer)
        return
    click.echo(answer["token"])
    note(name, f"the new {kind} token is shown only this once. {_ROTATION[kind]}")
    next_step = _after_rotation(api, cluster, kind)
    if next_step:
        say(next_step, label="next:", colour="yellow")


def _after_rotation(api, cluster: dict, kind: str) -> str | None:
    """Where the new token goes (the command with a placeholder: the token is printed once, on stdout)."""
    from renderer.install_steps import AGENT_TOKEN, agent_secret_command

    profile = _profile(cluster)
    steps = _install_steps(api, cluster, profile)
    if kind == "read":
        return (f"give ArgoCD the new token (READ_TOKEN: the token above) as it fetches {steps.served_url}"
                + (": the password of its repository Secret" if steps.repository_secret else "")
                + f"; a clone with it: {steps.clone}")
    if steps.agent_secret:
        return (f"put it into the agent's Secret (AGENT_TOKEN: the token above): "
                f"{agent_secret_command(profile, AGENT_TOKEN, replace=True)}")
    if steps.agent_token_ref:
        return f"store it at {steps.agent_token_ref} in the secret store: External Secrets makes the agent's Secret"
    return None


@clusters_group.command("delete", epilog=EXIT_CODES_HELP)
@click.argument("name")
@yes_option
@api_options
def delete_cluster(name: str, yes: bool, url, token, output: str) -> None:
    """Delete cluster NAME: Shipyard forgets it and archives its repository, which is never served again.

    What ArgoCD synced keeps running in the cluster; it gets no more changes.
    """
    api = client(url, token, output)
    api.call("GET", _cluster_path(name))
    confirm(f"delete cluster {name}", "Shipyard forgets it, its workspaces and apps, and archives its repository.",
            yes, output)
    answer = api.call("DELETE", _cluster_path(name))
    if output == "json":
        print_json({"ok": True, **answer})
        return
    say(f"cluster {name}" + (f"; its repository is archived at {answer['archive']}" if answer["archive"]
                             else "; it had no repository"), label="deleted")


# --- shipyard workspaces ------------------------------------------------------------------------------------


def _workspace_ref(ref: str) -> tuple[str, str]:
    """(cluster, workspace) of CLUSTER:WORKSPACE."""
    cluster, sep, workspace = ref.partition(":")
    if not sep or not cluster or not workspace or ":" in workspace or "/" in ref:
        raise click.BadParameter(f"{ref!r}: write the workspace as CLUSTER:WORKSPACE", param_hint="WORKSPACE")
    return cluster, workspace


def _workspace_path(ref: str) -> str:
    cluster, workspace = _workspace_ref(ref)
    return f"{_cluster_path(cluster)}/workspaces/{quote(workspace, safe='')}"


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: write KEY=VALUE", param_hint=option)
        pairs[key] = text
    return pairs


def _workspace_fields(environment: str | None, labels: tuple[str, ...], quota: tuple[str, ...],
                      secret_paths: tuple[str, ...]) -> dict:
    """The fields of a workspace the options give; a repeatable option given replaces the whole field."""
    fields: dict = {}
    if environment is not None:
        fields["environment"] = environment
    if labels:
        fields["labels"] = _pairs(labels, "--label")
    if quota:
        fields["quota"] = _pairs(quota, "--quota")
    if secret_paths:
        fields["secret_paths"] = list(secret_paths)
    return fields


def workspace_options(command):
    """--environment, --label, --quota and --secret-path, the fields of a workspace."""
    for option in reversed((
        click.option("--environment", help="dev, staging, prod, test or sandbox (create: dev)."),
        click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
                     help="A label of its namespace (repeatable; replaces them all)."),
        click.option("--quota", multiple=True, metavar="KEY=VALUE",
                     help="A ResourceQuota limit, e.g. requests.cpu=4 (repeatable; replaces them all)."),
        click.option("--secret-path", "secret_paths", multiple=True, metavar="PATH",
                     help="A secret path outside WORKSPACE/ its apps may read (repeatable; cluster-admin only)."),
    )):
        command = option(command)
    return command


def _workspace_rows(workspaces: list[dict]):
    return ((f"{w['cluster']}:{w['name']}", w["environment"],
             ",".join(f"{k}={v}" for k, v in sorted((w.get("labels") or {}).items())) or "-",
             ",".join(f"{k}={v}" for k, v in sorted((w.get("quota") or {}).items())) or "-",
             (w["created_at"] or "")[:19]) for w in workspaces)


def _print_workspaces(workspaces: list[dict]) -> None:
    print_table(("WORKSPACE", "ENVIRONMENT", "LABELS", "QUOTA", "CREATED"), _workspace_rows(workspaces))


@click.group("workspaces", invoke_without_command=True, epilog=EXIT_CODES_HELP)
@click.option("--cluster", help="Only this cluster's workspaces.")
@api_options
@click.pass_context
def workspaces_group(ctx: click.Context, cluster: str | None, url, token, output: str) -> None:
    """List the workspaces you may read (the bare command), or create, update or delete one.

    A workspace is a namespace of a cluster, written CLUSTER:WORKSPACE.
    """
    if ctx.invoked_subcommand is not None:
        return
    api = client(url, token, output)
    names = [cluster] if cluster else [c["name"] for c in api.call("GET", "/api/v1/clusters")["clusters"]]
    rows = [w for name in names for w in api.call("GET", f"{_cluster_path(name)}/workspaces")["workspaces"]]
    if output == "json":
        print_json({"workspaces": rows})
        return
    _print_workspaces(rows)


@workspaces_group.command("create", epilog=EXIT_CODES_HELP)
@click.argument("workspace")
@workspace_options
@api_options
def create_workspace(workspace: str, environment: str | None, labels, quota, secret_paths, url, token,
                     output: str) -> None:
    """Create WORKSPACE (CLUSTER:WORKSPACE): its namespace (and quota) goes into the cluster repository."""
    cluster, name = _workspace_ref(workspace)
    body = {"name": name, **_workspace_fields(environment, labels, quota, secret_paths)}
    created = client(url, token, output).call("POST", f"{_cluster_path(cluster)}/workspaces", json=body)
    _show_workspace(created, output, "created")


@workspaces_group.command("update", epilog=EXIT_CODES_HELP)
@click.argument("workspace")
@workspace_options
@api_options
def update_workspace(workspace: str, environment: str | None, labels, quota, secret_paths, url, token,
                     output: str) -> None:
    """Change WORKSPACE's (CLUSTER:WORKSPACE) environment, labels, quota or secret paths: only those given."""
    fields = _workspace_fields(environment, labels, quota, secret_paths)
    if not fields:
        raise click.UsageError("give what to change: --environment, --label, --quota or --secret-path")
    updated = client(url, token, output).call("PATCH", _workspace_path(workspace), json=fields)
    _show_workspace(updated, output, "updated")


def _show_workspace(workspace: dict, output: str, what: str) -> None:
    if output == "json":
        print_json(workspace)
        return
    _print_workspaces([workspace])
    say(f"workspace {workspace['cluster']}:{workspace['name']}; its namespace is in the cluster repository", label=what)


@workspaces_group.command("delete", epilog=EXIT_CODES_HELP)
@click.argument("workspace")
@yes_option
@api_options
def delete_workspace(workspace: str, yes: bool, url, token, output: str) -> None:
    """Delete WORKSPACE (CLUSTER:WORKSPACE), which holds no app any more: ArgoCD prunes its namespace."""
    path = _workspace_path(workspace)
    api = client(url, token, output)
    api.call("GET", path)
    confirm(f"delete workspace {workspace}", "Its namespace leaves the cluster repository and ArgoCD prunes it.",
            yes, output)
    api.call("DELETE", path)
    if output == "json":
        print_json({"ok": True, "deleted": workspace})
        return
    say(f"workspace {workspace}; ArgoCD prunes its namespace", label="deleted")


__all__ = ["clusters_group", "workspaces_group"]
