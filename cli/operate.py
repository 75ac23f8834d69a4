"""Acting on a running app through the control plane: restart, refresh, logs, run a job, its runs.

Each is one API call: a command the cluster's agent carries out (restart, refresh, logs) or a
job run, followed until the agent answered (``--wait`` for a run: until it ended). Logs are
asked with timestamps so ``--follow`` can ask again for what came after the last line shown.
"""

from __future__ import annotations

import sys
import time

import click

from cli.client import app_path, api_options, client, wait_options
from cli.exits import EXIT_CODES_HELP, EXIT_INVALID, EXIT_OFFLINE, EXIT_RUN_FAILED, EXIT_TIMEOUT, Failure
from cli.output import print_json, print_table, shown, stderr

ANSWER_WAIT = 60.0  # seconds an agent has to answer a command before the command gives up on it
POLL_SECONDS = 0.5


def _command(api, app: str, kind: str, params: dict, output: str) -> dict:
    """Send a command and wait for the agent's answer; returns the command as finally answered."""
    command = api.call("POST", f"{app_path(app)}/commands", json={"type": kind, "params": params})
    deadline = time.monotonic() + ANSWER_WAIT
    while command["state"] in ("queued", "sent"):
        if time.monotonic() >= deadline:
            raise Failure(f"the cluster's agent did not answer the {kind} command {command['id']} within "
                          f"{ANSWER_WAIT:.0f} s; it stays queued until it expires", EXIT_OFFLINE, kind="offline",
                          output=output)
        time.sleep(POLL_SECONDS)
        command = api.call("GET", f"/api/v1/commands/{command['id']}")
    if command["state"] != "done":
        raise Failure(f"{kind} {command['state']}: {command.get('error') or 'no reason given'}", EXIT_INVALID,
                      kind=command["state"], output=output)
    return command


def _send(app: str, kind: str, params: dict, url, token, output: str, said: str) -> None:
    """Send ``kind`` to the app's agent, wait for its answer, say ``said`` (or the command as JSON)."""
    command = _command(client(url, token, output), app, kind, params, output)
    if output == "json":
        print_json({"ok": True, "command": command})
    else:
        stderr.print(f"{shown(app)}: {said.format(**command)}", markup=False)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@api_options
def restart(app: str, url, token, output: str) -> None:
    """Restart the pods of APP (CLUSTER:WORKSPACE/APP), as a rollout would, without a new version."""
    _send(app, "restart", {}, url, token, output, "restarting ({kind} {name})")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.option("--hard", is_flag=True, help="Ask ArgoCD to regenerate the manifests too (a hard refresh).")
@api_options
def refresh(app: str, hard: bool, url, token, output: str) -> None:
    """Ask ArgoCD to compare APP (CLUSTER:WORKSPACE/APP) with its repository now."""
    _send(app, "refresh", {"hard": True} if hard else {}, url, token, output, "refresh asked")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("app")
@click.option("--pod", help="The pod (default: the app's most troubled one).")
@click.option("--container", "-c", help="The container (default: the pod's only or first).")
@click.option("--previous", "-p", is_flag=True, help="The container that ran before its last restart.")
@click.option("--tail", default=200, show_default=True, type=click.IntRange(1, 5000), help="Lines from the end.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@api_options
def logs(app: str, pod: str | None, container: str | None, previous: bool, tail: int, follow: bool, url, token,
         output: str) -> None:
    """Print the log of a pod of APP (CLUSTER:WORKSPACE/APP), read by its cluster's agent."""
    api = client(url, token, output)
    params: dict = {"tail_lines": tail, "timestamps": True, "previous": previous}
    for name, value in (("pod", pod), ("container", container)):
        if value:
            params[name] = value
    last: str | None = None
    try:
        while True:
            asked = dict(params, **({"since_time": last} if last else {}))
            result = _command(api, app, "logs", asked, output)["result"] or {}
            lines = [_split(line) for line in result.get("lines") or []]
            if last is not None:
                lines = [(stamp, text) for stamp, text in lines if stamp != last]
            if output == "json":
                print_json({"ok": True, "pod": pod, "container": result.get("container"),
                            "lines": [text for _, text in lines], "truncated": bool(result.get("truncated"))})
            else:
                for _, text in lines:
                    click.echo(text)
            last = next((stamp for stamp, _ in reversed(lines) if stamp), last)
            if not follow or previous:
                return
            params["tail_lines"] = 5000  # from now on: whatever came after the last line shown
            time.sleep(2.0)
    except KeyboardInterrupt:
        return


def _split(line: str) -> tuple[str | None, str]:
    """(the RFC 3339 time the API server put first, the line as the container wrote it)."""
    stamp, _, text = line.partition(" ")
    return (stamp, text) if stamp[:4].isdigit() and "T" in stamp else (None, line)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("job")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A param of the run (repeatable).")
@wait_options
@api_options
def run(job: str, params: tuple[str, ...], wait: bool, timeout: float, url, token, output: str) -> None:
    """Run JOB (CLUSTER:WORKSPACE/APP) now; with --wait, follow the run to its end (exit 12 if it failed)."""
    given = {}
    for pair in params:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r}: write NAME=VALUE", param_hint="--param")
        given[name] = value
    api = client(url, token, output)
    started = api.call("POST", f"{app_path(job)}/runs", json={"params": given})
    if not wait:
        if output == "json":
            print_json({"ok": True, "run": started})
        else:
            stderr.print(f"{shown(job)}: run {started['id']} {shown(started['state'])}", markup=False)
        return
    deadline = time.monotonic() + timeout
    current, said = started, None
    while current["state"] not in ("succeeded", "failed", "expired"):
        if time.monotonic() >= deadline:
            _end(job, current, output, EXIT_TIMEOUT, "not ended before the timeout")
        if output == "text" and current["state"] != said:
            said = current["state"]
            print(f"{time.strftime('%H:%M:%S')} {job} run {current['id']} {said}", file=sys.stderr, flush=True)
        time.sleep(POLL_SECONDS)
        runs = api.call("GET", f"{app_path(job)}/runs", params={"limit": 50})["runs"]
        current = next((r for r in runs if r["id"] == started["id"]), current)
    if current["state"] == "succeeded":
        _end(job, current, output, 0, "succeeded")
    _end(job, current, output, EXIT_RUN_FAILED, current["state"])


def _end(job: str, run: dict, output: str, code: int, what: str) -> None:
    if output == "json":
        print_json({"ok": code == 0, "run": run})
    elif code == 0:
        stderr.print(f"[green]{shown(job)} run {run['id']} {what}[/green]")
    else:
        stderr.print(f"[red]{shown(job)} run {run['id']} {what}[/red]"
                     + (f": {shown(run['message'])}" if run.get("message") else ""))
    sys.exit(code)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("job")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@api_options
def runs(job: str, limit: int, url, token, output: str) -> None:
    """List the runs of JOB (CLUSTER:WORKSPACE/APP), newest first."""
    api = client(url, token, output)
    rows = api.call("GET", f"{app_path(job)}/runs", params={"limit": limit})["runs"]
    if output == "json":
        print_json({"runs": rows})
        return
    print_table(("RUN", "STATE", "WORKFLOW", "PARAMS", "BY", "CREATED", "FINISHED"), (
        (str(row["id"]), row["state"], row.get("workflow") or "-",
         " ".join(f"{k}={v}" for k, v in sorted((row.get("params") or {}).items())) or "-",
         row["created_by"], (row["created_at"] or "")[:19], (row.get("finished_at") or "-")[:19]) for row in rows))


__all__ = ["restart", "refresh", "logs", "run", "runs"]
