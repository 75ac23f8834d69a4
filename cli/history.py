"""An app's history through the control plane: ``diff`` between two of its versions, ``trace`` of one
version's way to Healthy, and ``delete``, its end.

``trace`` asks GET .../trace: the spec repository commit a version came from (when it came
from one), when its deploy was accepted, the manifest commit, when the agent asked ArgoCD to
refresh for it and when ArgoCD was seen comparing against it, when ArgoCD was seen synced to
it and when Healthy, each with how long after the step before (gitops.trace).

``diff`` asks the API for what changed between two versions (GET .../diff?from=V1&to=V2:
the unified diff of the manifests each committed, and of their specs). ``delete`` is one
command for both places an app lives: through the control plane (CLUSTER:WORKSPACE/APP) it
makes a new version, action delete, that takes the app's directory and Application out of
the cluster repository, and ``--wait`` follows it until the app is gone from its cluster
(cli.wait); given a repository (``--repo``) it is the offline delete, a commit made here
(cli.offline).
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.client import Duration, app_path, _show_versions, _waited, api_options, client
from cli.exits import EXIT_CODES_HELP, EXIT_NOT_FOUND, Failure
from cli.output import note, print_json, print_table, say
from cli.prompts import confirm, yes_option

@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.argument("version", type=click.IntRange(1), required=False)
@api_options
def trace(app: str, version: int | None, url, token, output: str) -> None:
    """Show VERSION of APP (CLUSTER:WORKSPACE/APP; default: the current one) from its spec commit to Healthy.

    Each step with its time and how long after the step before: spec commit (for a version
    from a spec repository), accepted, committed, refresh requested (the agent asked ArgoCD to
    look now), seen (ArgoCD compared against the commit), synced, healthy; "-" for a step not
    reached.
    """
    answer = client(url, token, output).call("GET", f"{app_path(app)}/trace",
                                              params={"version": version} if version else {})
    if output == "json":
        print_json(answer)
        return
    print_table(("STEP", "AT", "AFTER", "DETAIL"), (
        (step["step"], (step["at"] or "-")[:23],
         "-" if step.get("after_seconds") is None else f"{step['after_seconds']:.1f} s", _trace_detail(step))
        for step in answer["steps"]))


def _trace_detail(step: dict) -> str:
    if step["at"] is None and step["step"] != "spec commit":
        return "not yet"
    parts = [f"{key} {str(value)[:12] if key in ('commit', 'revision') else value}"
             for key, value in step.items() if key not in ("step", "at", "after_seconds") and value]
    return ", ".join(parts) or "-"


# the colour of a diff's line by how it starts, on a terminal (click.echo drops it elsewhere)
_DIFF_COLOURS = (("+++", {"bold": True}), ("---", {"bold": True}), ("@@", {"fg": "cyan"}), ("+", {"fg": "green"}),
                 ("-", {"fg": "red"}))


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.argument("older", metavar="V1", type=click.IntRange(1))
@click.argument("newer", metavar="[V2]", type=click.IntRange(1), required=False)
@click.option("--spec", "of_spec", is_flag=True, help="Compare the versions' specs instead of their manifests.")
@api_options
def diff(app: str, older: int, newer: int | None, of_spec: bool, url, token, output: str) -> None:
    """Show how APP's (CLUSTER:WORKSPACE/APP) manifests changed from version V1 to V2 (default: the current one).

    A unified diff of the rendered manifests each version committed, coloured on a
    terminal; --output json gives both diffs, the manifests' and the specs'.
    """
    api = client(url, token, output)
    path = app_path(app)
    if newer is None:
        newer = api.call("GET", path)["current_version"]
        if newer is None:
            raise Failure(f"{app} has no committed version to compare with; give V2", EXIT_NOT_FOUND,
                          kind="not_found", output=output)
    answer = api.call("GET", f"{path}/diff", params={"from": older, "to": newer})
    if output == "json":
        print_json(answer)
        return
    what, text = ("specs", answer["spec"]) if of_spec else ("manifests", answer["manifests"])
    if text is None:
        note(app, f"v{older} or v{newer} was never committed, so it has no manifests; the specs' difference follows")
        what, text = "specs", answer["spec"]
    if not text:
        say(f"{app}: v{older} and v{newer} have the same {what}")
        return
    for line in text.splitlines():
        style = next((style for start, style in _DIFF_COLOURS if line.startswith(start)), None)
        click.echo(click.style(line, **style) if style else line)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.option("--repo", "repo_path", type=click.Path(file_okay=False, path_type=Path),
              help="Offline: delete from this cluster repository instead (APP is WORKSPACE/APP; needs --cluster).")
@click.option("--cluster", "cluster_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Offline, with --repo: the cluster profile YAML.")
@click.option("--remote", help="Offline: push the commit to this git remote (URL or path).")
@click.option("--author", help='Offline: who deletes, "Name <email>" or a user name.  [default: shipyard]')
@yes_option
@click.option("--wait", is_flag=True, help="Follow the delete until the app is gone from its cluster; exit 10 "
                                           "timed out, 11 agent not reporting.")
@click.option("--timeout", type=Duration(), default="10m", show_default=True,
              help="With --wait: how long to wait (90s, 10m, 1h).")
@api_options
def delete(app: str, repo_path: Path | None, cluster_path: Path | None, remote: str | None, author: str | None,
           yes: bool, wait: bool, timeout: float, url, token, output: str) -> None:
    """Delete APP through the control plane, or offline from a cluster repository.

    \b
    shipyard delete CLUSTER:WORKSPACE/APP [--yes] [--wait]
    shipyard delete WORKSPACE/APP --cluster PROFILE --repo PATH [--remote URL]

    Through the control plane the delete is a new version of the app: its manifests
    and Application leave the cluster repository in one commit, ArgoCD prunes what it
    ran, and its history stays. It asks for confirmation on a terminal; without one,
    give --yes. With --wait, follows it until the app is gone from its cluster.
    Offline, the commit is made in the repository given.
    """
    if repo_path is not None or cluster_path is not None:
        if repo_path is None or cluster_path is None:
            raise click.UsageError("an offline delete needs both --cluster PROFILE and --repo PATH")
        if wait:
            raise click.UsageError("--wait follows a delete made through the control plane; an offline one is a "
                                   "commit in the repository given, which no agent reports on")
        from cli.offline import delete_in_repository

        delete_in_repository(app, cluster_path, repo_path, remote, author or "shipyard", output)
        return
    if remote is not None or author is not None:
        raise click.UsageError("--remote and --author go with --cluster and --repo (an offline delete)")
    path = app_path(app)
    api = client(url, token, output)
    existing = api.call("GET", path)
    if existing["deleted"]:
        raise Failure(f"{app} is already deleted", EXIT_NOT_FOUND, kind="not_found", output=output)
    confirm(f"delete {app} ({existing['kind']}, v{existing['current_version'] or '-'})",
            "Its manifests and Application leave the cluster repository, and ArgoCD prunes what it runs.", yes, output)
    version = api.call("DELETE", path)
    _show_versions([version], output, quiet=wait)
    _waited(api, [version], wait, timeout, output)


__all__ = ["diff", "delete"]
