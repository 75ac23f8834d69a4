"""``--wait``: follow new versions on their clusters until each is running, or say why not.

A version is done when its cluster reports it Healthy (a job: when its definition is synced,
since a job has nothing running until it is run). It has failed when ArgoCD could not sync it
(``failed``), when its pods crash or cannot start or ArgoCD calls it Degraded for longer than
``DEGRADED_GRACE`` (``degraded``: a rollout's first crash may still be retried away), when its
cluster's agent is not heard from (the status would be stale), or when ``--timeout`` passes
first. Each has its own exit code (cli.exits), so a pipeline tells them apart.

A delete is done when the app is gone from its cluster: ArgoCD pruned its Application (whose
resources finalizer deletes the app's objects first) and the agent reported it gone, which the
status API shows as health ``Missing`` at no revision (gitops.ingest); or when no agent ever
reported the app, so there was nothing of it in the cluster to remove.

It asks the status of every app it still follows every ``POLL_SECONDS``, in one request
(``POST /api/v1/apps/status``, up to ``STATUS_BATCH`` apps each). On a terminal it keeps one
live line per app (rich); elsewhere (CI logs) it prints a timestamped line each time an app's
state changes; with ``--output json`` it prints nothing until the end, then one document.

Between committed and syncing it shows how the commit reached ArgoCD (gitops.trace's steps,
from the status answer's ``refresh_requested_at`` and ``seen_at``): "refresh requested", the
agent asked ArgoCD to look now rather than at its next poll, and "seen by ArgoCD", ArgoCD
compared against the commit; each line says how long after the commit, by the control plane's
clock.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass, field

from cli.client import app_path
from cli.exits import EXIT_DEGRADED, EXIT_OFFLINE, EXIT_OK, EXIT_SYNC_FAILED, EXIT_TIMEOUT, Failure

POLL_SECONDS = 0.25
STATUS_BATCH = 100  # apps per status request: the most POST /api/v1/apps/status takes
LAST_EVENTS = 5  # the Kubernetes Events a degraded version's summary prints
DEGRADED_GRACE = 10.0
STILL_GOING = ("pending", "committed", "syncing", "synced")
# how the commit reached ArgoCD: the status answer's field of each step, and how the wait names it
ARRIVAL_STEPS = (("refresh_requested_at", "refresh requested"), ("seen_at", "seen by ArgoCD"))
# how each end is told, and what it exits with
ENDS = {
    "healthy": ("running", EXIT_OK),
    "replaced": ("replaced by a newer version before this wait saw it healthy", EXIT_OK),
    "gone": ("gone from its cluster", EXIT_OK),
    "failed": ("the sync failed", EXIT_SYNC_FAILED),
    "degraded": ("degraded", EXIT_DEGRADED),
    "offline": ("the cluster's agent is not reporting", EXIT_OFFLINE),
    "timeout": ("not running before the timeout", EXIT_TIMEOUT),
}


@dataclass
class Followed:
    """One version being waited for, and what its cluster last said of it."""

    app: str  # cluster:workspace/app
    number: int
    action: str = "deploy"  # the version's: deploy, rollback, promote or delete
    kind: str = "service"
    status: str = "pending"
    message: str | None = None
    reasons: list[str] = field(default_factory=list)
    pods: list[dict] = field(default_factory=list)
    degraded_since: float | None = None
    end: str | None = None
    events: list[dict] = field(default_factory=list)  # a degraded version's last Kubernetes Events
    committed_at: str | None = None
    arrived: dict[str, str] = field(default_factory=dict)  # ARRIVAL_STEPS field -> when (ISO 8601)

    @property
    def shown(self) -> str:
        """The status as the wait shows it: a committed version, how far towards ArgoCD it got."""
        if self.status == "committed":
            return next((name for key, name in reversed(ARRIVAL_STEPS) if key in self.arrived), self.status)
        return self.status

    def after_commit(self, key: str) -> float | None:
        """Seconds from the commit to the step ``key`` of ARRIVAL_STEPS, when both are known."""
        if self.committed_at is None or key not in self.arrived:
            return None
        return (dt.datetime.fromisoformat(self.arrived[key]) - dt.datetime.fromisoformat(self.committed_at)
                ).total_seconds()

    def as_dict(self) -> dict:
        return {"app": self.app, "version": self.number, "status": self.status, "end": self.end,
                "message": self.message, "reasons": self.reasons,
                "pods": [{"name": p["name"], "restarts": p["restarts"], "reasons": p["reasons"]}
                         for p in self.pods if p["reasons"]], "events": self.events,
                "committed_at": self.committed_at, **{key: self.arrived.get(key) for key, _ in ARRIVAL_STEPS}}


def observe(item: Followed, answer: dict, now: float) -> None:
    """Take in the app's status answer; set ``item.end`` when the version reached an end."""
    item.kind = answer.get("kind") or item.kind
    if answer.get("connectivity") != "online":
        item.status, item.end = "offline", "offline"
        item.message = f"the cluster's agent is {answer.get('connectivity')}: its status of the app would be stale"
        return
    mine = next((v for v in answer.get("versions") or [] if v["number"] == item.number), None)
    if mine is None:
        item.status, item.end = "replaced", "replaced"
        return
    if item.action == "delete":
        gone = not answer.get("known") or (answer.get("health") == "Missing" and answer.get("revision") is None)
        item.status, item.end = ("gone", "gone") if gone else ("deleting", None)
        return
    item.status, item.message = mine.get("status") or mine.get("state"), mine.get("message")
    item.committed_at = mine.get("committed_at") or item.committed_at
    # once known, kept: a version replaced meanwhile has them in its trace only
    item.arrived.update({key: mine[key] for key, _ in ARRIVAL_STEPS if mine.get(key)})
    item.reasons, item.pods = list(answer.get("reasons") or []), list(answer.get("pods") or [])
    if item.status == "healthy" or (item.kind == "job" and item.status == "synced"):
        item.end = "healthy"
    elif item.status in ("failed", "replaced"):
        item.end = item.status
    elif item.status == "degraded":
        item.degraded_since = item.degraded_since if item.degraded_since is not None else now
        if now - item.degraded_since >= DEGRADED_GRACE:
            item.end = "degraded"
    else:
        item.degraded_since = None


def wait_for(api, versions: list[dict], timeout: float, output: str, clock=time.monotonic, sleep=time.sleep) -> int:
    """Follow ``versions`` (as the API answered them) until each ends; returns the exit code to leave with."""
    items = [Followed(v["app"], v["number"], v.get("action", "deploy")) for v in versions if v.get("state") != "failed"]
    started = clock()
    show = _Shower(output, items)
    try:
        while True:
            now = clock()
            going = [item for item in items if item.end is None]
            for item, answer in zip(going, statuses(api, [item.app for item in going])):
                observe(item, answer, now)
                show.update(item, now - started)
            if all(item.end for item in items):
                break
            if now - started >= timeout:
                for item in items:
                    if item.end is None:
                        item.end = "timeout"
                        show.update(item, now - started)
                break
            sleep(POLL_SECONDS)
    finally:
        show.close()
    for item in items:
        if item.end == "degraded":  # why, as kubectl describe would say it
            item.events = api.call("GET", f"{app_path(item.app)}/events", params={"limit": LAST_EVENTS})["events"]
    code = max((ENDS[item.end][1] for item in items), default=EXIT_OK, key=_severity)
    show.summary(items, clock() - started, code)
    return code


def statuses(api, apps: list[str]) -> list[dict]:
    """The status of each of ``apps`` (cluster:workspace/app), as GET .../status answers it: one request
    per ``STATUS_BATCH`` apps (POST /api/v1/apps/status), however many a pipeline follows."""
    answers = []
    for start in range(0, len(apps), STATUS_BATCH):
        answers += api.call("POST", "/api/v1/apps/status",
                            json={"apps": apps[start:start + STATUS_BATCH], "versions": 20})["apps"]
    return answers


def _severity(code: int) -> tuple:
    """The exit code that says most: any failure over success; among failures, the first in this order."""
    order = (EXIT_SYNC_FAILED, EXIT_DEGRADED, EXIT_OFFLINE, EXIT_TIMEOUT)
    return (code != EXIT_OK, -order.index(code) if code in order else 0)


class _Shower:
    """How the wait shows itself: a live table on a terminal, lines in a log, nothing until the end in JSON."""

    def __init__(self, output: str, items: list[Followed]):
        from cli.output import stderr

        self.output, self.items, self.console = output, items, stderr
        self.shown: dict[str, str] = {}
        self.steps_shown: set[tuple[str, str]] = set()
        self.live = None
        if output == "text" and stderr.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(0.0), console=stderr.console, refresh_per_second=4, transient=False)
            self.live.start()

    def _table(self, elapsed: float):
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, title=f"waiting {elapsed:.0f} s", title_justify="left")
        for column in ("APP", "VERSION", "STATUS", "WHY"):
            table.add_column(column)
        for item in self.items:
            style = {"healthy": "green", "gone": "green", "failed": "red", "degraded": "red", "offline": "red",
                     "timeout": "red"}.get(item.end or "", "yellow")
            why = ", ".join(item.reasons) if item.status == "degraded" and item.reasons else (item.message or "")
            table.add_row(Text(item.app), Text(f"v{item.number}"), Text(item.shown, style=style), Text(why))
        return table

    def update(self, item: Followed, elapsed: float) -> None:
        if self.output != "text":
            return
        if self.live is not None:
            self.live.update(self._table(elapsed))
            return
        lines = []
        for key, name in ARRIVAL_STEPS:
            if key in item.arrived and (item.app, key) not in self.steps_shown:
                self.steps_shown.add((item.app, key))
                after = item.after_commit(key)
                lines.append(f"{name} ({after:.2f} s after the commit)" if after is not None else name)
        said = f"{item.status}|{item.end}|{item.message}"
        if self.shown.get(item.app) != said:
            self.shown[item.app] = said
            line = f"{item.status}: {item.message}" if item.message else item.status
            # in the order they happen: committed, the steps towards ArgoCD, then syncing and on
            lines = [line, *lines] if item.status in ("pending", "committed") else [*lines, line]
        stamp = time.strftime("%H:%M:%S")
        for line in lines:
            print(f"{stamp} {item.app} v{item.number} {line}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()

    def summary(self, items: list[Followed], elapsed: float, code: int) -> None:
        if self.output == "json":
            from cli.output import print_json

            print_json({"ok": code == EXIT_OK, "waited_seconds": round(elapsed, 2),
                        "apps": [item.as_dict() for item in items]})
            return
        from rich.markup import escape

        for item in items:
            what, exit_code = ENDS[item.end]
            if item.action == "delete" and item.end == "timeout":
                what = "still in its cluster at the timeout"
            colour = "green" if exit_code == EXIT_OK else "red"
            self.console.print(f"[{colour}]{escape(item.app)} v{item.number}: {escape(what)}[/{colour}]"
                               + (f" ({escape(item.message)})" if item.message and exit_code else ""))
            steps = [f"{name} {after:.2f} s" for key, name in ARRIVAL_STEPS
                     if (after := item.after_commit(key)) is not None]
            if steps:
                self.console.print(f"  {', '.join(steps)} after the commit")
            for pod in item.pods if item.end == "degraded" else []:
                if pod["reasons"]:
                    self.console.print(f"  pod {escape(pod['name'])}: {escape(', '.join(pod['reasons']))}, "
                                       f"{pod['restarts']} restart(s)"
                                       + (f": {escape(pod['message'])}" if pod.get("message") else ""))
            for event in item.events:
                self.console.print(f"  event {escape(event_line(event))}")


def event_line(event: dict) -> str:
    """A Kubernetes Event on one line, as kubectl describe lists them: when, type, reason, object, message."""
    count = f" (x{event['count']})" if (event.get("count") or 1) > 1 else ""
    return (f"{(event.get('last') or '-')[:19]} {event.get('type') or '-'} {event.get('reason') or '-'} "
            f"{event.get('object') or '-'}: {event.get('message') or ''}{count}")


def raise_for(code: int, output: str) -> None:
    """Leave with ``code`` when the wait did not end well (the summary already said why)."""
    if code != EXIT_OK:
        if output == "json":
            sys.exit(code)
        raise Failure("the wait ended without every version running", code, kind="wait")


__all__ = ["wait_for", "observe", "Followed", "raise_for", "event_line", "ARRIVAL_STEPS", "DEGRADED_GRACE",
           "POLL_SECONDS"]
