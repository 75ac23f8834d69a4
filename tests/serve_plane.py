"""Serve the control plane in a process of its own, for crash and multi-process tests.

    python tests/serve_plane.py --data DIR --database-url URL [--port 0] [--reconcile-interval 0]

builds ``webapp.create_app`` and serves it with werkzeug's threaded server on
127.0.0.1; once it listens it prints ``listening on <port>`` on stdout, so a
test can start it on port 0 and learn the port. It runs until it is killed.

``SHIPYARD_TEST_CRASH`` (test-only; the product has no such switch) makes the
process SIGKILL itself in the middle of a deploy, so that a crash lands
*between* the steps of the deploy (gitops.deploy, gitops.commit_step) and not only before or after them:

* ``after-intent[:N]``: on the N-th (default first) commit attempt, after the
  Versions' intent was committed to the database and before the git commit;
* ``after-git-commit[:N]``: on the N-th commit, after the git commit moved the
  branch and before the database transaction that records it commits.

Both wrap ``gitops.apply.apply``, which the committer calls inside its
recording transaction (gitops.commit_step.Committers._commit_and_record).
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from werkzeug.serving import make_server  # noqa: E402

from contract.repository import app_dir, application_file
import gitops.apply  # noqa: E402
from webapp import create_app  # noqa: E402

CRASH_ENV = "SHIPYARD_TEST_CRASH"
CRASH_MODES = ("after-intent", "after-git-commit")


def _die() -> None:
    # SIGKILL: no atexit, no finally, no flush: what a power cut or the OOM killer leaves behind.
    os.kill(os.getpid(), signal.SIGKILL)


def install_crash(spec: str) -> None:
    mode, _, nth = spec.partition(":")
    if mode not in CRASH_MODES:
        raise SystemExit(f"{CRASH_ENV} must be one of {', '.join(CRASH_MODES)} (optionally :N), not {spec!r}")
    target = int(nth or 1)
    real_apply = gitops.apply.apply
    calls = 0
    lock = threading.Lock()

    def apply(*args, **kwargs):
        nonlocal calls
        with lock:
            calls += 1
            hit = calls == target
        if hit and mode == "after-intent":
            _die()
        result = real_apply(*args, **kwargs)
        if hit and mode == "after-git-commit" and result.commit_id is not None:
            _die()
        return result

    gitops.apply.apply = apply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reconcile-interval", type=float, default=0)
    args = parser.parse_args()
    if os.environ.get(CRASH_ENV):
        install_crash(os.environ[CRASH_ENV])
    app = create_app({
        "DATA_DIR": args.data,
        "DATABASE_URL": args.database_url,
        "AUTO_MIGRATE": True,
        "RECONCILE_INTERVAL": args.reconcile_interval,
        "SECRET_KEY": "test-secret-key",
        "LOG_FORMAT": "text",
    })
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()


# --- for the tests that drive it ------------------------------------------------------------


class PlaneServer:
    """One serve_plane.py process; ``kill()`` is SIGKILL, so nothing it does on exit runs."""

    def __init__(self, data: Path, database_url: str, log: Path, *, crash: str | None = None,
                 reconcile_interval: float = 0):
        self.data, self.database_url, self.log = data, database_url, log
        self.crash, self.reconcile_interval = crash, reconcile_interval
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self, timeout: float = 60) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
        if self.crash:
            env[CRASH_ENV] = self.crash
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--data", str(self.data), "--database-url", self.database_url,
                 "--reconcile-interval", str(self.reconcile_interval)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.kill()
                raise RuntimeError(f"the server did not start within {timeout}s: {self.log.read_text()[-2000:]}")
        line = self.process.stdout.readline().decode()
        if not line.startswith("listening on "):
            self.kill()
            raise RuntimeError(f"the server did not start: {line!r} {self.log.read_text()[-2000:]}")
        self.url = f"http://127.0.0.1:{int(line.split()[-1])}"
        return self.url

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 60) -> int | None:
        if self.process is None:
            return None
        code = self.process.wait(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def seed(data: Path, database_url: str, workspaces: tuple[str, ...] = ("storefront",)) -> str:
    """Migrate the database and create an admin token, cluster demo and ``workspaces``; returns the token."""
    from tests.plane import add_cluster, add_workspace, make_user

    app = create_app({"TESTING": True, "DATA_DIR": str(data), "DATABASE_URL": database_url, "AUTO_MIGRATE": True,
                      "RECONCILE_INTERVAL": 0, "SECRET_KEY": "test-secret-key", "LOG_FORMAT": "text"})
    try:
        admin = make_user(app, "admin", "tenant-admin")
        add_cluster(admin)
        for workspace in workspaces:
            add_workspace(admin, "demo", workspace)
        return admin.token
    finally:
        app.extensions["shipyard"].close()


class Plane:
    """The database and repositories of a control plane, opened in the test process (no server)."""

    def __init__(self, data: Path, database_url: str):
        from gitops import db
        from gitops.commit_step import Committers
        from gitops.reconciler import worker_id
        from gitops.repo_store import RepoStore

        self.engine = db.make_engine(database_url, pool_size=4)
        self.sessions = db.session_factory(self.engine)
        self.repos = RepoStore(Path(data) / "repos")
        self.committers = Committers(self.sessions, self.repos)
        self.worker = worker_id()

    def close(self) -> None:
        self.engine.dispose()

    def reconcile(self, *, after_lease: bool = True, now=None) -> int:
        """Run the reconciler until it finds nothing; ``after_lease`` pretends every claim has run out."""
        import datetime as dt

        from gitops.reconciler import LEASE, reconcile
        from gitops.models import utcnow

        if now is None:
            now = (lambda: utcnow() + LEASE + dt.timedelta(minutes=1)) if after_lease else utcnow
        total = 0
        for _ in range(20):
            repaired = reconcile(self.sessions, self.repos, self.committers, self.worker, now=now)
            total += repaired
            if repaired == 0:
                return total
        raise AssertionError("the reconciler kept finding work")

    def versions(self) -> list:
        """Every Version with its app, workspace and cluster loaded, by app and number."""
        from sqlalchemy import select

        from gitops.models import Application, Version

        with self.sessions() as session:
            rows = session.scalars(select(Version).join(Application)
                                   .order_by(Application.name, Version.number)).all()
            for row in rows:
                row.application.workspace.cluster.profile_text  # noqa: B018 - load before the session closes
            return list(rows)

    def repo(self, cluster: str = "demo"):
        from sqlalchemy import select

        from gitops.models import Cluster

        with self.sessions() as session:
            return self.repos.open(session.scalar(select(Cluster).where(Cluster.name == cluster)))


def deployment_ids_in_history(repo) -> tuple[dict[str, list[str]], int]:
    """Every Shipyard-Deployment-Id trailer over the whole history -> the commits carrying it; and the commit count."""
    import pygit2

    from gitops.apply import TRAILER_DEPLOYMENT

    found: dict[str, list[str]] = {}
    count = 0
    tip = repo.tip()
    if tip is None:
        return found, 0
    for commit in repo.repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL):
        count += 1
        for line in commit.message.splitlines():
            if line.startswith(TRAILER_DEPLOYMENT + ": "):
                found.setdefault(line.split(": ", 1)[1].strip(), []).append(str(commit.id))
    return found, count


def check_consistency(plane: Plane, accepted: list[tuple[str, int]] = (), before: set[str] = frozenset()) -> dict:
    """Assert that the database and the repository agree; returns a few figures.

    ``accepted``: (app, number) of every deploy the clients saw accepted; ``before``: deployment
    ids in the history before any deploy (creating a cluster or workspace commits its bootstrap).
    """
    import json

    from renderer.render import render
    from renderer.spec import load_specs

    from gitops.clusters import profile_of

    versions = plane.versions()
    repo = plane.repo()
    in_history, commits = deployment_ids_in_history(repo)
    by_app: dict[str, list] = {}
    for version in versions:
        by_app.setdefault(version.application.name, []).append(version)
    state = {(v.application.name, v.number): v.state for v in versions}
    problems = []

    stuck = [(v.application.name, v.number, v.state) for v in versions if v.state not in ("committed", "superseded")]
    if stuck:  # every spec the tests send is valid: nothing may fail, nothing may stay pending
        problems.append(f"versions neither committed nor superseded: {stuck}")
    for app, number in accepted:
        if state.get((app, number)) not in ("committed", "superseded"):
            problems.append(f"accepted deploy {app} v{number} ended {state.get((app, number))}")
    twice = {d: c for d, c in in_history.items() if len(c) > 1}
    if twice:
        problems.append(f"deployments committed more than once: {twice}")
    known = {v.deployment_id: v for v in versions}
    for deployment_id, carried in in_history.items():
        if deployment_id in before:
            continue
        version = known.get(deployment_id)
        if version is None or version.state != "committed":
            problems.append(f"commit {carried[0][:12]} carries deployment {deployment_id} of "
                            f"{'no version' if version is None else f'a {version.state} version'}")
    changed = 0
    for app, rows in by_app.items():
        numbers = [v.number for v in rows]
        if numbers != list(range(1, len(rows) + 1)):
            problems.append(f"{app}: version numbers {numbers} are not 1..{len(rows)}")
        for version in rows:
            if version.state != "committed":
                continue
            label = f"{app} v{version.number}"
            try:
                repo.repo[version.commit_id]
            except (KeyError, ValueError, TypeError):
                problems.append(f"{label}: commit {version.commit_id} is not in the repository")
                continue
            carried = in_history.get(version.deployment_id, [])
            if carried and carried[0] != version.commit_id:
                problems.append(f"{label}: recorded commit {version.commit_id[:12]}, trailer in {carried[0][:12]}")
            if version.changed and not carried:
                problems.append(f"{label}: changed the app but no commit carries {version.deployment_id}")
            changed += bool(version.changed)
        committed = [v for v in rows if v.state == "committed"]
        if not committed:
            problems.append(f"{app}: no committed version")
            continue
        highest = committed[-1]
        if highest.number != rows[-1].number:
            problems.append(f"{app}: the last version v{rows[-1].number} ended {rows[-1].state}")
        if highest.application.current_version != highest.number:
            problems.append(f"{app}: current_version {highest.application.current_version}, "
                            f"highest committed v{highest.number}")
        workspace = highest.application.workspace
        (spec,) = load_specs(json.dumps(highest.spec, ensure_ascii=False), f"{app} v{highest.number}")
        rendering = render(spec, profile_of(workspace.cluster))
        directory = app_dir(workspace.name, app)
        expected = {f"{directory}/{name}": data for name, data in rendering.files.items()}
        snapshot = repo.snapshot()
        if snapshot.walk(directory) != expected or \
                snapshot.read(application_file(workspace.name, app)) != rendering.application_bytes:
            problems.append(f"{app}: the repository does not hold the rendering of v{highest.number}")
    fsck = subprocess.run(["git", "--git-dir", str(repo.path), "fsck", "--strict"], capture_output=True, text=True)
    if fsck.returncode != 0:
        problems.append(f"git fsck --strict: {fsck.stdout}{fsck.stderr}")
    assert not problems, "\n".join(problems)
    return {"versions": len(versions), "commits": commits, "changed": changed,
            "committed": sum(v.state == "committed" for v in versions)}


if __name__ == "__main__":
    main()
