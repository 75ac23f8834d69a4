"""``apps`` and ``status`` as people read them, and ``-w/--watch``: the view, then what changed in it.

kubectl's habit: with ``--watch`` a command prints what it prints without, then asks the
API again every ``POLL_SECONDS`` and prints only what changed, until Ctrl-C (exit 0):

=========  ==================================  ==========================================
command    text                                ``--output json|yaml``
=========  ==================================  ==========================================
apps       the table, then each row that       ``{"apps": [...]}``, then per change
           changed, under the same columns     ``{"type": "ADDED|MODIFIED|DELETED",
           (a deleted app's health: Deleted)   "app": {...}}``
status     the view again when anything        the status document again when
           people read in it changed           anything but its time changed
=========  ==================================  ==========================================

Without ``--watch`` a command is the watch's first round. Every round is one call of
``follow``'s body (read, compare, show): tests run it for a number of rounds with a sleep
of their own. Output is flushed after each round, so a watch piped into ``grep`` shows
each change as it comes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from itertools import count
from typing import Any

import click

from cli.output import print_json, print_table, shown, stderr, stdout_console

POLL_SECONDS = 1.0
STATUS_EVENTS = 8  # the recent Kubernetes Events `shipyard status` shows
APP_COLUMNS = ("APP", "KIND", "HEALTH", "SYNC", "LIVE", "NEWEST", "UPDATED")

watch_option = click.option("--watch", "-w", is_flag=True,
                            help="Then print again what changes, asking every second (Ctrl-C stops).")


def follow(read: Callable[[], Any], show: Callable[[Any, Any], None], *, watch: bool,
           compared: Callable[[Any], Any] = lambda value: value, every: float = POLL_SECONDS,
           sleep: Callable[[float], None] = time.sleep, rounds: int | None = None) -> None:
    """Show what ``read()`` returns; with ``watch``, read again every ``every`` seconds and show each change.

    ``show(previous, current)`` prints ``current`` (``previous`` is None the first time); a
    change is a change of ``compared(current)``. A watch ends with Ctrl-C, or after ``rounds`` reads.
    """
    last = None
    try:
        for round_number in count():
            if round_number:
                sleep(every)
            current = read()
            if round_number == 0 or compared(current) != compared(last):
                show(last, current)
                last = current
            sys.stdout.flush()
            if not watch or (rounds is not None and round_number + 1 >= rounds):
                return
    except KeyboardInterrupt:
        return


# --- shipyard apps ------------------------------------------------------------------------------------------


def list_apps(api, cluster: str | None, workspace: str | None) -> list[dict]:
    """Every app the caller may read (of ``cluster``, ``workspace``), through the listing's pages."""
    rows, after = [], None
    while True:
        params = {k: v for k, v in {"cluster": cluster, "workspace": workspace, "after": after}.items() if v}
        page = api.call("GET", "/api/v1/apps", params=params)
        rows.extend(page["apps"])
        after = page.get("next")
        if not after:
            return rows


def app_cells(row: dict) -> tuple[str, ...]:
    return (f"{row['cluster']}:{row['workspace']}/{row['name']}", row["kind"], _health(row), _sync(row),
            str(row.get("live_version") or "-"), str(row["current_version"] or "-"), (row["updated_at"] or "")[:19])


def _health(row: dict) -> str:
    """An app's health as people read it: a failed sync first, whatever the old pods' health."""
    if row.get("operation") in ("Failed", "Error"):
        return "SyncFailed"
    return row.get("health") or "NotReported"


def _sync(row: dict) -> str:
    return "Syncing" if row.get("operation") == "Running" else row.get("sync") or "-"


class _AppsShown:
    """How ``apps`` shows the listing, then each app whose row changed; a watch's rows keep the first columns."""

    def __init__(self, output: str, watch: bool):
        self.output, self.watch = output, watch
        self.widths: tuple[int, ...] | None = None

    def read(self, api, cluster: str | None, workspace: str | None) -> dict[str, Any]:
        """The apps by CLUSTER:WORKSPACE/APP, each as it is shown: its row's cells, or its document."""
        return {f"{row['cluster']}:{row['workspace']}/{row['name']}": row if self.output == "json" else app_cells(row)
                for row in list_apps(api, cluster, workspace)}

    def show(self, previous: dict | None, current: dict) -> None:
        if previous is None:
            if self.output == "json":
                print_json({"apps": list(current.values())}, in_stream=self.watch)
                return
            rows = list(current.values())
            self.widths = tuple(max(len(cell) for cell in column) for column in zip(APP_COLUMNS, *rows))
            print_table(APP_COLUMNS, rows, widths=self.widths)
            return
        changes = [("ADDED" if key not in previous else "MODIFIED", current[key])
                   for key in current if current[key] != previous.get(key)]
        changes += [("DELETED", previous[key]) for key in previous if key not in current]
        if self.output == "json":
            for kind, row in changes:
                print_json({"type": kind, "app": row}, in_stream=True)
        elif changes:
            print_table(APP_COLUMNS, [(row[0], row[1], "Deleted", "-", *row[4:]) if kind == "DELETED" else row
                                      for kind, row in changes], widths=self.widths, header=False)


def show_apps(api, cluster: str | None, workspace: str | None, output: str, watch: bool) -> None:
    """``shipyard apps``: the table (or document) of the apps; with ``watch``, then each app that changed."""
    shown_apps = _AppsShown(output, watch)
    follow(lambda: shown_apps.read(api, cluster, workspace), shown_apps.show, watch=watch)


# --- shipyard status ----------------------------------------------------------------------------------------


# what a change of the app's status is not: when the agent last said anything, and (in text) what it does not show
_UNCOMPARED = {"json": ("updated_at",), "text": ("updated_at", "revision", "synced_revision")}


def show_status(api, path: str, output: str, watch: bool) -> None:
    """``shipyard status``: the app's live status (``path``: its API path); with ``watch``, again when it changed."""

    def show(previous: dict | None, current: dict) -> None:
        if output == "json":
            print_json(current, in_stream=watch)
            return
        if previous is not None:
            click.echo()
        print_status(current)

    def read() -> dict:
        answer = api.call("GET", f"{path}/status", params={"versions": 5})
        return {**answer, "events": api.call("GET", f"{path}/events", params={"limit": STATUS_EVENTS})["events"]}

    follow(read, show, watch=watch,
           compared=lambda answer: {k: v for k, v in answer.items() if k not in _UNCOMPARED[output]})


def print_status(answer: dict) -> None:
    """An app's status answer as people read it: health, sync, versions, the pods and why they fail, and
    the recent Kubernetes Events of its objects."""
    console = stdout_console()
    newest = answer["versions"][0]["number"] if answer["versions"] else None
    live = answer.get("live_version")
    console.print(f"app {answer['app']}   agent {answer['connectivity']}"
                  + ("   (status is stale)" if answer.get("stale") and answer.get("known") else ""), markup=False)
    if not answer.get("known"):
        console.print("no agent has reported this app yet", markup=False)
    else:
        console.print(f"health {answer['health']}   sync {answer['sync']}"
                      + (f" ({answer['operation']})" if answer.get("operation") else "")
                      + f"   live v{live or '-'}   newest v{newest or '-'}", markup=False)
        if answer.get("message"):
            console.print(f"message {answer['message']}", markup=False)
    if answer.get("pods"):
        print_table(("POD", "PHASE", "READY", "RESTARTS", "REASONS"), (
            (pod["name"], pod.get("phase") or "-", "yes" if pod["ready"] else "no", str(pod["restarts"]),
             ", ".join(pod["reasons"]) or "-") for pod in answer["pods"]))
    if answer.get("events"):
        print_table(("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), (
            ((event.get("last") or "-")[:19], event.get("type") or "-", event.get("reason") or "-",
             event.get("object") or "-", (event.get("message") or "")
             + (f" (x{event['count']})" if (event.get("count") or 1) > 1 else "")) for event in answer["events"]))
    for version in answer["versions"]:
        if version.get("status") in ("failed", "degraded") and version.get("message"):
            stderr.print(f"[red]v{version['number']} {version['status']}:[/red] {shown(version['message'])}")


__all__ = ["follow", "watch_option", "show_apps", "show_status", "list_apps", "app_cells", "print_status",
           "APP_COLUMNS", "POLL_SECONDS"]
