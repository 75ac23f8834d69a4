"""Spec repositories: a push's webhook to a committed version and to Healthy, and one push of 1,000 specs.

What it measures
    The embedded control plane as users run it (``shipyard up``: SQLite, the cluster
    repository, the spec repositories' worker and the SIMULATED compute plane in its
    process, which fetches the cluster repository on each commit's refresh (and every
    180 s, ArgoCD's poll), rolls out and reports through the agent's code), and spec
    repositories served as a forge serves them: real ``git http-backend`` over https on
    loopback (tests/gitserver.py, with a throwaway certificate the control plane trusts
    through ``SHIPYARD_GIT_CA_BUNDLE``, and 127.0.0.1 let through the tenant's egress policy).
    Each repository is registered with ``shipyard repo register`` (which answers its
    webhook secret) and given workspace-editor where its specs deploy.

    Rounds (``--rounds``): one spec changed (a new image tag), two ways side by side, in an
    order that alternates from round to round; the second starts once the first's version
    is committed, and the round ends when both run Healthy:

    ``push + webhook``    the spec repository's path: a commit, ``git push``, then the
                          push webhook as GitHub sends it (its headers, a new
                          ``X-GitHub-Delivery``, ``X-Hub-Signature-256`` over the body
                          with the registered secret); timed from the webhook's send
    ``shipyard deploy``   the peer: the same change to a twin app in the same workspace,
                          deployed by the command in its own process, logged in with
                          ``shipyard login``; timed from the process's start

    committed: the new version's ``committed_at`` (recorded by the server; one machine,
    one clock) minus that start. Healthy: the version's ``healthy`` step in ``GET
    .../trace`` (the first report of the app Synced and Healthy at its commit or a later
    one) minus that start. The trace's other steps (the sync asked for, the version
    accepted, Synced) are reported the same way, to show where the time goes.

    One repository of ``--specs`` service specs (the four shapes of benchmarks/synthetic.py,
    close to fixtures/specs/web.yaml; 50 apps per workspace, a file each under
    ``deploy/<workspace>/``), registered while its branch is still empty (so the poll that
    registering asks for deploys nothing), then three pushes of one commit each, each with
    its webhook:

    first sync        every file added: the repository's first sync deploys them all (from
                      no synced commit, as ``repo sync --whole`` would)
    all changed       every file changed (a new image tag)
    10 changed        10 files changed across the workspaces and shapes; checked: exactly
                      those 10 apps got a new version and no other app did (the sync's
                      versions, and every app's version count); a wrong answer exits 1

    Each is timed from its webhook to the end of its sync (``finished_at``: every version
    committed and the sync recorded), and to every app it changed running its new version
    Synced and Healthy (the apps' listing, polled every second); with the control plane's
    CPU seconds from the webhook to the sync's end, its simulated cluster's included.

Run: ``.venv/bin/python benchmarks/spec_webhooks.py [--rounds 10] [--specs 1000]`` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import synthetic  # and the repository's root on sys.path, for tests/gitserver.py
from deploy_wait import SHIPYARD, Plane, pct, run_child

from tests.gitserver import TOKEN, USER, HttpsGitServer, git, self_signed_certificate

WORKSPACE = "storefront"  # a workspace of the demo cluster that `shipyard up` creates
HOOK_APP, DEPLOY_APP = "hooked", "deployed"
PEERS = ("push + webhook", "shipyard deploy")
# a version's trace (gitops/trace.py): its steps, and what the summary calls them
STEPS = {"spec commit": "sync asked for", "accepted": "accepted", "committed": "committed", "synced": "Synced",
         "healthy": "Healthy"}
CHANGED_FEW = 10
GITHUB_ORGANIZATION = "acme"


def at(text: str) -> float:
    """A time the server answered (ISO 8601, with its zone) as seconds since the epoch, like ``time.time()``."""
    return datetime.datetime.fromisoformat(text).timestamp()


def wait_until(what: str, found: Callable[[], object], timeout: float = 300, every: float = 0.2):
    """Poll ``found()`` until it answers something; that answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = found()
        if answer:
            return answer
        time.sleep(every)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


class SpecRepository:
    """A spec repository on the git server, a clone to change it in, and its registration."""

    def __init__(self, server: HttpsGitServer, work: Path, name: str):
        self.name = name
        self.url = server.new_repository(f"{name}.git")
        self.clone = work / name
        git(work, "clone", "-q", str(server.root / f"{name}.git"), str(self.clone))
        git(self.clone, "checkout", "-q", "-b", "main")
        self.head = "0" * 40
        self.secret = self.webhook_url = ""

    def register(self, plane: Plane) -> None:
        """``shipyard repo register``, with the git server's token on stdin; keeps the webhook's URL and secret."""
        made = subprocess.run([SHIPYARD, "repo", "register", self.name, self.url, "--username", USER,
                               "--password-stdin", "-o", "json"], input=TOKEN + "\n", capture_output=True,
                              text=True, env=plane.env, check=False)
        assert made.returncode == 0, made.stdout + made.stderr
        created = json.loads(made.stdout)
        self.secret, self.webhook_url = created["webhook_secret"], created["webhook_url"]

    def commit(self, files: dict[str, str], message: str) -> dict:
        """Write ``files``, commit and push them; what the push moved, for its webhook."""
        added = [path for path in files if not (self.clone / path).exists()]
        for path, text in files.items():
            (self.clone / path).parent.mkdir(parents=True, exist_ok=True)
            (self.clone / path).write_text(text)
        git(self.clone, "add", "-A")
        git(self.clone, "commit", "-q", "-m", message)
        git(self.clone, "push", "-q", "origin", "main")  # into the repository the server serves, on disk
        pushed = {"before": self.head, "after": git(self.clone, "rev-parse", "HEAD"),
                  "tree": git(self.clone, "rev-parse", "HEAD^{tree}"),
                  "timestamp": git(self.clone, "show", "-s", "--format=%cI"), "message": message,
                  "added": sorted(added), "modified": sorted(set(files) - set(added))}
        self.head = pushed["after"]
        return pushed

    def send_push_hook(self, pushed: dict) -> tuple[str, float]:
        """The push webhook GitHub sends for ``pushed``; its delivery id and when it was sent."""
        body = json.dumps(github_push(self, pushed), separators=(",", ":")).encode()
        delivery = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/8e03811",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": "488201337",
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": "718245310",
            "X-Hub-Signature": "sha1=" + hmac.new(self.secret.encode(), body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest(),
        }
        sent = time.time()
        answer = httpx.post(self.webhook_url, content=body, headers=headers, timeout=30)
        assert answer.status_code == 202, (answer.status_code, answer.text)
        return delivery, sent

    def finished_sync(self, plane: Plane, delivery: str | None = None) -> dict:
        """The sync of ``delivery`` (or the newest sync) once it has run."""
        def done():
            for run in plane.api.get(f"/api/v1/spec-repos/{self.name}/syncs", params={"limit": 10}).json()["syncs"]:
                if (delivery is None or run["delivery"] == delivery) and run["state"] not in ("queued", "running"):
                    return run
            return None
        return wait_until(f"the sync of {self.name}", done)


def github_push(repo: SpecRepository, pushed: dict) -> dict:
    """A ``push`` event's body, in GitHub's shape (fixtures/webhooks/github-push.json) with this push's values."""
    full_name = f"{GITHUB_ORGANIZATION}/{repo.name}"
    person = {"name": "ana", "email": "ana@example.com", "username": "ana"}
    commit = {"id": pushed["after"], "tree_id": pushed["tree"], "distinct": True, "message": pushed["message"],
              "timestamp": pushed["timestamp"], "url": f"https://github.com/{full_name}/commit/{pushed['after']}",
              "author": person, "committer": person, "added": pushed["added"], "removed": [],
              "modified": pushed["modified"]}
    return {
        "ref": "refs/heads/main", "before": pushed["before"], "after": pushed["after"],
        "repository": {"id": 718245310, "name": repo.name, "full_name": full_name, "private": True,
                       "html_url": f"https://github.com/{full_name}", "clone_url": repo.url,
                       "ssh_url": f"git@github.com:{full_name}.git", "git_url": f"git://github.com/{full_name}.git",
                       "default_branch": "main", "master_branch": "main", "organization": GITHUB_ORGANIZATION},
        "pusher": {"name": "ana", "email": "ana@example.com"},
        "sender": {"login": "ana", "id": 4518273, "type": "User", "site_admin": False},
        "created": pushed["before"] == "0" * 40, "deleted": False, "forced": False, "base_ref": None,
        "compare": f"https://github.com/{full_name}/compare/{pushed['before'][:12]}...{pushed['after'][:12]}",
        "commits": [commit], "head_commit": commit,
    }


def bind(plane: Plane, repo: str, workspace: str) -> None:
    made = plane.api.post("/api/v1/role-bindings", json={"role": "workspace-editor", "subject_kind": "repo",
                                                         "subject": repo, "cluster": "demo", "workspace": workspace})
    assert made.status_code == 201, made.text


def wait_committed(plane: Plane, app: str, number: int) -> None:
    """Until version ``number`` of the app is committed."""
    def committed():
        latest = plane.api.get(f"/api/v1/apps/demo/{WORKSPACE}/{app}").json().get("latest_version") or {}
        return latest.get("number") == number and latest.get("committed_at")
    wait_until(f"{app} v{number} committed", committed)


def traced(plane: Plane, app: str, number: int) -> dict[str, float]:
    """The steps of version ``number`` of the app (``GET .../trace``) and when each was, once it ran Healthy."""
    def healthy():
        steps = plane.api.get(f"/api/v1/apps/demo/{WORKSPACE}/{app}/trace", params={"version": number}).json()["steps"]
        reached = {step["step"]: at(step["at"]) for step in steps if step["at"]}
        return reached if "healthy" in reached else None
    return wait_until(f"{app} v{number} Healthy", healthy, every=0.5)


def allow_loopback(plane: Plane) -> None:
    """Let the tenant's repositories be fetched from 127.0.0.1, as a tenant-admin does for a forge on a private network."""
    allowed = plane.api.patch("/api/v1/tenant", json={"remote_allowed_hosts": ["127.0.0.1"]})
    assert allowed.status_code == 200, allowed.text


def new_repository(plane: Plane, server: HttpsGitServer, work: Path, name: str, workspaces: list[str]) -> SpecRepository:
    """A spec repository registered while its branch is still empty, and bound once its first poll has run.

    Registering asks for a first sync at once (the poll of a repository never synced); with no
    branch yet it deploys nothing, so every spec file of the benchmark goes through a timed sync.
    """
    repo = SpecRepository(server, work, name)
    repo.register(plane)
    first = repo.finished_sync(plane)
    assert first["state"] == "failed" and first["trigger"] == "poll", first
    for workspace in workspaces:
        bind(plane, name, workspace)
    return repo


def run_rounds(plane: Plane, server: HttpsGitServer, work: Path, rounds: int) -> dict[str, dict[str, list[float]]]:
    """The two peers side by side: each one's samples of the steps of its versions' traces, from its start."""
    repo = new_repository(plane, server, work, "hooks", [WORKSPACE])
    deploy_file = work / f"{DEPLOY_APP}.yaml"
    results = {peer: {step: [] for step in STEPS} for peer in PEERS}

    def spec(app: str, tag: str) -> str:
        return synthetic.spec_text(app, WORKSPACE, tag, "web")

    def hooked(number: int) -> float:
        pushed = repo.commit({f"deploy/{HOOK_APP}.yaml": spec(HOOK_APP, f"{number}.0.0")}, f"{HOOK_APP} {number}.0.0")
        delivery, sent = repo.send_push_hook(pushed)
        run = repo.finished_sync(plane, delivery)
        assert run["state"] == "deployed" and [v["number"] for v in run["versions"]] == [number], run
        return sent

    def deployed(number: int) -> float:
        deploy_file.write_text(spec(DEPLOY_APP, f"{number}.0.0"))
        started = time.time()
        code, _, err, _, _ = run_child([SHIPYARD, "deploy", str(deploy_file)], plane.env)
        assert code == 0, err[-2000:]
        return started

    peers = {PEERS[0]: (HOOK_APP, hooked), PEERS[1]: (DEPLOY_APP, deployed)}
    for round_index in range(-1, rounds):  # round -1 makes version 1 of each, untimed: the rounds change apps that exist
        number = round_index + 2
        order = PEERS if round_index % 2 == 0 else PEERS[::-1]
        started = {}
        for peer in order:  # the second starts once the first's version is committed
            app, change = peers[peer]
            started[peer] = change(number)
            wait_committed(plane, app, number)
        steps = {peer: traced(plane, peers[peer][0], number) for peer in order}
        if round_index < 0:
            continue
        for peer in order:
            for step, moment in steps[peer].items():
                results[peer][step].append(moment - started[peer])
        print(f"round {round_index + 1}: " + "   ".join(
            f"{peer}: committed {results[peer]['committed'][-1] * 1000:5.0f} ms, "
            f"Healthy {results[peer]['healthy'][-1]:5.1f} s" for peer in order), flush=True)
    return results


def fleet_app(index: int) -> str:
    return f"demo:{synthetic.workspace_name(index)}/{synthetic.app_name(index)}"


def fleet_files(tag: str, indexes: Iterable[int]) -> dict[str, str]:
    return {f"deploy/{synthetic.workspace_name(index)}/{synthetic.app_name(index)}.yaml":
            synthetic.spec_text(synthetic.app_name(index), synthetic.workspace_name(index), tag,
                                synthetic.shape_of(index)) for index in indexes}


def listed_apps(plane: Plane) -> dict[str, dict]:
    """The demo cluster's apps by name, each with its version count, health, sync and live version."""
    listed = plane.api.get("/api/v1/apps", params={"cluster": "demo", "limit": 10_000}).json()["apps"]
    return {f"demo:{app['workspace']}/{app['name']}": app for app in listed}


def running(plane: Plane, wanted: dict[str, int]) -> bool:
    """Whether the simulated cluster runs each app's version (``wanted``: app -> number), Synced and Healthy."""
    apps = listed_apps(plane)
    return all(apps[name]["live_version"] == number and (apps[name]["sync"], apps[name]["health"])
               == ("Synced", "Healthy") for name, number in wanted.items())


def run_fleet(plane: Plane, server: HttpsGitServer, work: Path, count: int) -> tuple[list[str], list[str]]:
    """The repository of ``count`` specs, step by step (the module's docstring): report lines, and what was wrong."""
    workspaces = sorted({synthetic.workspace_name(index) for index in range(count)})
    for workspace in workspaces:
        made = plane.api.post("/api/v1/clusters/demo/workspaces", json={"name": workspace})
        assert made.status_code == 201, made.text
    repo = new_repository(plane, server, work, "fleet", workspaces)
    lines = [f"{count} specs in {len(workspaces)} workspaces, one commit a step; times from its webhook",
             f"{'':<22} {'committed':>9} {'all Healthy':>12} {'versions':>9} {'plane CPU':>10}"]
    wrong = []
    steps = (("first sync, every spec", range(count)), ("every spec changed", range(count)),
             (f"{CHANGED_FEW} specs changed", few(count)))
    for number, (step, indexes) in enumerate(steps, 1):
        pushed = repo.commit(fleet_files(f"{number}.0.0", indexes), step)
        cpu_before = plane.cpu()
        delivery, started = repo.send_push_hook(pushed)
        run = repo.finished_sync(plane, delivery)
        cpu = plane.cpu() - cpu_before
        wanted = {fleet_app(index): number for index in indexes}
        made = {v["app"]: v["number"] for v in run["versions"] if not v["unchanged"]}
        if run["state"] != "deployed" or made != wanted:
            wrong.append(f"{step}: the sync was {run['state']} with new versions of {len(made)} apps; "
                         f"{len(set(made) ^ set(wanted))} apps differ from the {len(wanted)} changed")
        wait_until(f"{step}: every app running", lambda made=made: running(plane, made), every=1)
        lines.append(f"{step:<22} {at(run['finished_at']) - started:8.1f}s {time.time() - started:11.1f}s "
                     f"{len(made):9} {cpu:9.1f}s")
    counts = {name: app["versions"] for name, app in listed_apps(plane).items() if name.startswith("demo:ws-")}
    changed = {fleet_app(index) for index in few(count)}
    differ = sorted(name for name in {fleet_app(index) for index in range(count)} | set(counts)
                    if counts.get(name) != (3 if name in changed else 2))
    if differ:
        wrong.append(f"{len(differ)} apps have other version counts than 3 (changed) and 2, e.g. {differ[:5]}")
    lines.append(f"check: exactly the {CHANGED_FEW} changed apps got a new version (v3), the other "
                 f"{count - CHANGED_FEW} none (v2): " + ("ok" if not wrong else "WRONG: " + "; ".join(wrong)))
    return lines, wrong


def few(count: int) -> list[int]:
    """10 apps spread over the workspaces and the four shapes."""
    step = count // CHANGED_FEW
    return [index * step + index % step for index in range(CHANGED_FEW)]


def summary(results: dict[str, dict[str, list[float]]], rounds: int) -> list[str]:
    lines = [f"{rounds} rounds, one spec changed each; python {sys.version.split()[0]}, {os.cpu_count()} cpus",
             f"{'':<18} {'committed p50 / p95 / max':>30}   {'Healthy p50 / p95 / max':>28}"]
    for peer in PEERS:
        committed = [value * 1000 for value in results[peer]["committed"]]
        healthy = results[peer]["healthy"]
        lines.append(f"{peer:<18} {statistics.median(committed):8.0f} / {pct(committed, 95):6.0f} / "
                     f"{max(committed):6.0f} ms   {statistics.median(healthy):6.1f} / {pct(healthy, 95):5.1f} / "
                     f"{max(healthy):5.1f} s")
    hook, deploy = results[PEERS[0]], results[PEERS[1]]
    lines.append(f"webhook / deploy (medians): committed "
                 f"{statistics.median(hook['committed']) / statistics.median(deploy['committed']):.2f}x, Healthy "
                 f"{statistics.median(hook['healthy']) / statistics.median(deploy['healthy']):.2f}x")
    for peer in PEERS:  # the version's trace: each step's median, from the peer's start
        lines.append(f"{peer} by step (medians from its start): " + ", ".join(
            f"{name} {statistics.median(results[peer][step]) * 1000:.0f} ms" for step, name in STEPS.items()
            if results[peer][step]))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--specs", type=int, default=1000)
    options = parser.parse_args()
    if options.rounds < 1 or options.specs < CHANGED_FEW * 2:
        parser.error(f"--rounds is at least 1 and --specs at least {CHANGED_FEW * 2}")
    work = Path(tempfile.mkdtemp(prefix="spec-webhooks-"))
    (work / "served").mkdir()
    cert, key = self_signed_certificate(work)
    server = HttpsGitServer(work / "served", cert, key)
    # Plane starts `shipyard up` with this environment: it trusts the git server's certificate
    os.environ["SHIPYARD_GIT_CA_BUNDLE"] = str(cert)
    os.environ.setdefault("SHIPYARD_CRD_SCHEMAS", str(synthetic.SHARED_CRD_SCHEMAS))
    try:
        plane = Plane(work)
        try:
            print(f"shipyard up pid {plane.process.pid}; spec repositories at https://127.0.0.1:{server.port}/",
                  flush=True)
            allow_loopback(plane)
            results = run_rounds(plane, server, work, options.rounds)
            fleet, wrong = run_fleet(plane, server, work, options.specs)
        finally:
            plane.close()
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("\n".join(summary(results, options.rounds) + fleet))
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
