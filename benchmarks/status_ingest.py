"""Status ingest rate: the agent's batches through the API and in-process, against a raw batched upsert.

What it measures
    How many object states per second the control plane stores when a
    cluster's agent reports, on a throwaway PostgreSQL server
    (tests/pgserver.py). One cluster (the demo profile) is created through
    ``webapp.create_app`` and the API, as ``api_deploys.seed`` does, with
    2,000 apps in 40 workspaces; the apps and one committed Version each are
    inserted in bulk (SQLAlchemy Core, as ``list_apps.py`` does), each
    Version on its own commit of the cluster repository (a history of 2,000
    deploy commits), so the synced revisions the agent reports map to live
    versions as in production (``--history shared`` puts every Version on
    one commit instead, which leaves out the cost of walking the history to
    map revisions to versions). The cluster has 10,000 followed objects: per
    app its ArgoCD Application, its Deployment and 3 Pods, built as
    Kubernetes objects and reduced to compact states by the agent's own
    ``agent.summaries``. They are streamed as a snapshot (20 batches of 500,
    untimed; its rate is printed) and then as deltas: every timed call
    changes every object (the Applications move to a new revision, a commit
    on top of the deploys, as ArgoCD moves every app of a repository on each
    commit; health, Deployment generation and ready replicas, Pod restarts
    and readiness change), so every row is written. Peers, taking turns
    round by round, each writing the same 10,000 rows of the one cluster:

    ingest over HTTP      the real agent reporter (``agent.report.Reporter``
                          over httpx: JSON, gzip, 500 deltas per batch, two
                          in flight, applied in order) to ``shipyard serve``
                          (gunicorn, 2 workers x 8 threads, the serve
                          default) on loopback: ``POST /agent/v1/.../status``
                          (token check, gunzip, JSON, ``gitops.ingest.ingest``,
                          commit); it continues the stream the snapshot began
    ingest in-process     ``gitops.ingest.ingest`` called directly, one
                          session and commit per batch, with the same batches
                          decoded as the server decodes them (JSON, gzip and
                          ``contract.protocol.decode_batch`` done beforehand,
                          untimed); it continues the same stream (next seq)
    raw batched upsert    the limit: the same rows written by one
                          ``INSERT INTO cluster_object ... ON CONFLICT
                          (cluster_id, kind, namespace, name) DO UPDATE``
                          ``executemany`` per batch of 500 on a raw psycopg
                          connection, one commit per batch

    ``ingest`` does more than the upsert: it moves the stream position under
    a row lock, and turns each Application into the app's ``AppStatus`` (a
    ``StatusEvent`` when sync, health, revision or message changed, and the
    live version by commit ancestry). The ratios ingest / raw are the figures
    to read (goal: >= 0.50x for ingest over HTTP). Also printed: CPU per
    1,000 objects of this process (the agent side, or the in-process
    ingest), of the server's processes and of PostgreSQL. With SQLite
    (not in ``--quick``; ``--no-sqlite`` leaves it out) a second control
    plane gets the same cluster and the in-process and raw peers run on it
    too (no HTTP server: PostgreSQL is the goal).

How
    ``timing.interleave`` rotates the peers each round; one warm-up round is
    dropped. The objects' new states (and the reporter's pending deltas) are
    prepared before each round, untimed. Rates are 10,000 / the median time.
    ``--profile`` adds a cProfile listing of one more in-process round.

Run: ``.venv/bin/python benchmarks/status_ingest.py [--quick] [--rounds N] [--apps N] [--history per-app|shared]
[--no-sqlite] [--profile]``
(``--quick``: PostgreSQL only, 2 rounds; about a minute.) Needs the
PostgreSQL server binaries (``apt-get install postgresql``), as the tests do.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gzip
import io
import json
import logging
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import synthetic
from api_deploys import Server, serve, tree_cpu_seconds
from synthetic import ROOT
from timing import interleave, ratio

sys.path.insert(0, str(ROOT / "tests"))  # tests/pgserver.py: the throwaway PostgreSQL server

from agent import summaries  # noqa: E402
from contract import labels as contract_labels  # noqa: E402
from contract.repository import application_name  # noqa: E402
from contract.protocol import Delta, StatusBatch, decode_batch, encode  # noqa: E402
from agent.report import BATCH_SIZE  # noqa: E402

CLUSTER = "demo"
ARGOCD_NAMESPACE = "argocd"
PODS_PER_APP = 3
OBJECTS_PER_APP = 2 + PODS_PER_APP  # Application, Deployment, Pods
HEALTHS = ("Healthy", "Progressing", "Healthy", "Degraded")
HISTORY = {"per-app": "each app's Version on a commit of its own",
           "shared": "every app's Version on one commit"}

# The raw peer's statement: what gitops.ingest._apply_objects asks SQLAlchemy for, written out.
UPSERT_SQL = """
INSERT INTO cluster_object (cluster_id, kind, namespace, name, state, digest, stream, updated_at)
VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})
ON CONFLICT (cluster_id, kind, namespace, name) DO UPDATE
SET state = excluded.state, digest = excluded.digest, stream = excluded.stream, updated_at = excluded.updated_at
"""


# --- the cluster's objects, as the API server holds them and as the agent reduces them ---------------


def labels(workspace: str, app: str) -> dict[str, str]:
    return {**contract_labels.MANAGED_BY, contract_labels.WORKSPACE_LABEL: workspace, contract_labels.APP_LABEL: app,
            "app.kubernetes.io/name": app}


def application_object(workspace: str, app: str, revision: str, health: str = "Healthy",
                       sync: str = "Synced") -> dict:
    """An ArgoCD Application shaped like ArgoCD's (benchmarks/agent_rss.py), synced to ``revision``."""
    resources = [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": workspace, "name": app,
                  "status": "Synced", "health": {"status": health}}] + [
        {"version": "v1", "kind": kind, "namespace": workspace, "name": f"{app}-{kind.lower()}", "status": "Synced"}
        for kind in ("Service", "ConfigMap", "ServiceAccount", "HorizontalPodAutoscaler")]
    message = (f'Deployment "{app}" exceeded its progress deadline' if health == "Degraded"
               else "waiting for rollout to finish: 2 of 3 updated replicas are available..."
               if health == "Progressing" else None)
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": application_name(workspace, app), "namespace": ARGOCD_NAMESPACE, "labels": labels(workspace, app),
                     "annotations": {"argocd.argoproj.io/manifest-generate-paths": f"/apps/{workspace}/{app}"}},
        "spec": {"project": "shipyard", "destination": {"server": "https://kubernetes.default.svc",
                                                        "namespace": workspace},
                 "source": {"repoURL": "https://shipyard.example/git/default/demo.git", "targetRevision": "main",
                            "path": f"apps/{workspace}/{app}"},
                 "syncPolicy": {"automated": {"prune": True, "selfHeal": True}}},
        "status": {"sync": {"status": sync, "revision": revision},
                   "health": {"status": health, **({"message": message} if message else {})},
                   "operationState": {"phase": "Succeeded", "message": "successfully synced (all tasks run)",
                                      "startedAt": "2026-11-29T00:00:00Z", "finishedAt": "2026-11-29T00:00:05Z"},
                   "resources": resources,
                   "reconciledAt": "2026-11-29T00:00:06Z", "sourceType": "Directory"},
    }


def deployment_object(workspace: str, app: str, generation: int, ready: int, replicas: int = 3) -> dict:
    available = {"type": "Available", "status": "True" if ready == replicas else "False",
                 "reason": "MinimumReplicasAvailable" if ready == replicas else "MinimumReplicasUnavailable"}
    progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": workspace, "generation": generation, "labels": labels(workspace, app)},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": generation, "replicas": replicas, "readyReplicas": ready,
                   "updatedReplicas": replicas, "availableReplicas": ready, "unavailableReplicas": replicas - ready,
                   "conditions": [available, progressing]},
    }


def pod_name(app: str, replica: int) -> str:
    return f"{app}-7d9f6c5b8-{replica:05x}"


def pod_object(workspace: str, app: str, replica: int, restarts: int, ready: bool, waiting: str | None = None) -> dict:
    state = ({"waiting": {"reason": waiting, "message": f"back-off 40s restarting failed container={app}"}}
             if waiting else {"running": {"startedAt": "2026-11-29T00:00:10Z"}})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(app, replica), "namespace": workspace, "labels": labels(workspace, app)},
        "spec": {"nodeName": f"node-{(len(app) + replica) % 7}"},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": app, "image": f"ghcr.io/acme/{app}:1.0.0", "ready": ready and not waiting,
             "restartCount": restarts, "state": state}]},
    }


def object_states(apps: int, generation: int, revision: str) -> list[tuple[str, str, str, dict]]:
    """(kind, namespace, name, compact state) of every object, as it is at ``generation``."""
    out = []
    health = HEALTHS[generation % len(HEALTHS)]
    ready = 3 if generation % 2 == 0 else 2
    for index in range(apps):
        workspace, app = synthetic.workspace_name(index), synthetic.app_name(index)
        out.append(("Application", ARGOCD_NAMESPACE, f"{workspace}.{app}",
                    summaries.application(application_object(workspace, app, revision, health))))
        out.append(("Deployment", workspace, app,
                    summaries.deployment(deployment_object(workspace, app, generation + 1, ready))))
        for replica in range(PODS_PER_APP):
            out.append(("Pod", workspace, pod_name(app, replica),
                        summaries.pod(pod_object(workspace, app, replica, generation, ready=replica < ready))))
    return out


def decoded(batch: StatusBatch) -> StatusBatch:
    """The batch as the control plane decodes it: encoded (JSON, gzip), then parsed back."""
    return decode_batch(json.loads(gzip.decompress(encode(batch))))


def chunks(items: list, size: int = BATCH_SIZE) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --- a seeded control plane -------------------------------------------------------------------------


@dataclass
class Seeded:
    """A control plane database with one cluster of ``apps`` apps, and what the peers need of it."""

    admin_token: str
    agent_token: str
    tenant: str
    cluster_id: int
    deploys: list[str]  # the commit of each app's Version 1
    revisions: list[str]  # commits on top of every deploy: the revisions ArgoCD moves the apps to
    seconds: float


def seed(database_url: str, data_dir: Path, apps: int, revisions: int, deploy_commits: bool = True) -> Seeded:
    """Migrate; an admin token, the demo cluster and its workspaces through the API; apps in bulk.

    Each app gets one committed Version on a commit of its own (``deploy_commits``; else all on
    the cluster's first commit), and ``revisions`` more commits are stacked on top: what ArgoCD
    reports as synced. The commits change no files (status maps revisions to versions by
    ancestry only) and hang on ``refs/bench/*`` so the branch the control plane commits to is
    untouched. The app that seeded is closed: whoever serves the cluster opens the repository
    afresh, as a server process does (a pygit2 handle that has looked the commits up walks
    them far more slowly; see docs/benchmarks.md).
    """
    import pygit2
    from sqlalchemy import insert, select

    from gitops.models import Application, Cluster, Version, Workspace, utcnow

    started = time.perf_counter()
    app, token, tenant_id = synthetic.bench_plane(database_url, data_dir)
    plane = app.extensions["shipyard"]
    client, headers = app.test_client(), {"Authorization": f"Bearer {token}"}
    response = client.post("/api/v1/clusters", headers=headers,
                           json={"name": CLUSTER, "profile": synthetic.DEMO_PROFILE.read_text()})
    if response.status_code != 201:
        raise SystemExit(f"cannot create the cluster: {response.get_json()}")
    agent_token = response.get_json()["agent_token"]
    for workspace in sorted({synthetic.workspace_name(i) for i in range(apps)}):
        response = client.post(f"/api/v1/clusters/{CLUSTER}/workspaces", headers=headers, json={"name": workspace})
        if response.status_code != 201:
            raise SystemExit(f"cannot create workspace {workspace}: {response.get_json()}")

    with plane.sessions.begin() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == CLUSTER))
        cluster_id = cluster.id
        repo = plane.repos.open(cluster)
    git = repo.repo
    signature = pygit2.Signature("bench", "bench@example.invalid")
    head = git.head.peel(pygit2.Commit)
    parent = head.id

    def stack(count: int, what: str) -> list[str]:
        nonlocal parent
        made = []
        for number in range(count):
            parent = git.create_commit(None, signature, signature, f"{what} {number}", head.tree_id, [parent])
            made.append(str(parent))
        if made:
            git.references.create(f"refs/bench/{what}", parent, force=True)
        return made

    deploys = stack(apps, "deploy") if deploy_commits else [str(head.id)] * apps
    on_top = stack(revisions, "revision")

    now = utcnow()
    with plane.sessions.begin() as session:
        workspaces = dict(session.execute(select(Workspace.name, Workspace.id)
                                          .where(Workspace.cluster_id == cluster_id)).all())
        session.execute(insert(Application), [
            {"tenant_id": tenant_id, "workspace_id": workspaces[synthetic.workspace_name(i)],
             "name": synthetic.app_name(i), "kind": "service", "version_counter": 1, "current_version": 1,
             "deleted": False, "created_at": now, "updated_at": now} for i in range(apps)])
        ids = dict(session.execute(select(Application.name, Application.id)
                                   .join(Workspace).where(Workspace.cluster_id == cluster_id)).all())
        session.execute(insert(Version), [
            {"application_id": ids[synthetic.app_name(i)], "number": 1, "action": "deploy",
             "deployment_id": str(uuid.uuid4()), "spec": {"type": "service"}, "spec_digest": "sha256:" + "0" * 64,
             "state": "committed", "commit_id": deploys[i], "changed": True, "author": "bench", "source": "api",
             "notes": [], "created_at": now, "committed_at": now} for i in range(apps)])
    tenant_name = app.config["TENANT"]
    plane.close()
    return Seeded(token, agent_token, tenant_name, cluster_id, deploys, on_top, time.perf_counter() - started)


def open_plane(database_url: str, data_dir: Path):
    """The control plane as a freshly started process has it: ``create_app`` on the seeded database."""
    from webapp import create_app

    return create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": database_url, "RECONCILE_INTERVAL": 0,
                       "LOG_FORMAT": "text"})


# --- one database under test -----------------------------------------------------------------------------


@dataclass
class Target:
    """A control plane (PostgreSQL or SQLite) and the peers' state on it."""

    label: str
    seeded: Seeded
    app: object  # the Flask app of the in-process peer (webapp.create_app)
    raw_connection: object  # a DB-API connection for the raw upsert
    placeholder: str
    server: Server | None = None
    reporter: object = None  # agent.report.Reporter (HTTP), when there is a server
    stream: str = ""  # the stream of the in-process peer when there is no reporter
    seq: int = 0
    cpu: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # peer -> (self, server, db)
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def plane(self):
        return self.app.extensions["shipyard"]

    def repo(self):
        from gitops.models import Cluster

        with self.plane.sessions() as session:
            return self.plane.repos.open(session.get(Cluster, self.seeded.cluster_id))

    def position(self) -> tuple[str, int]:
        """The stream and last seq, shared by the HTTP and in-process peers."""
        if self.reporter is not None:
            return self.reporter.stream, self.reporter.seq
        return self.stream, self.seq

    def advance(self, seq: int) -> None:
        if self.reporter is not None:
            self.reporter.seq = seq
        else:
            self.seq = seq


def ingest_batches(target: Target, batches: list[StatusBatch]) -> None:
    """What the status view does per batch, without HTTP: one session, ``ingest``, commit."""
    from gitops.models import Cluster
    from gitops.ingest import ingest
    from gitops.status import StatusSettings

    plane, settings = target.plane, StatusSettings.from_config(target.app.config)
    stream, seq = target.position()
    cluster = Cluster(id=target.seeded.cluster_id)  # ingest re-reads it under a row lock
    repo = target.repo()
    for batch in batches:
        seq += 1
        batch.stream, batch.seq = stream, seq
        with plane.sessions() as session:
            result = ingest(session, cluster, batch, repo=repo, settings=settings)
            session.commit()
        target.outcomes[result.outcome] = target.outcomes.get(result.outcome, 0) + 1
        if result.outcome != "applied":
            raise SystemExit(f"{target.label}: in-process ingest of seq {seq} was {result.outcome}")
    target.advance(seq)


def raw_upsert(target: Target, batches: list[list[tuple[str, str, str, dict, str]]]) -> None:
    """The limit: one INSERT ... ON CONFLICT DO UPDATE executemany per batch, one commit each."""
    from gitops.models import utcnow

    stream, _ = target.position()
    connection = target.raw_connection
    sql = UPSERT_SQL.format(p=target.placeholder)
    cluster_id = target.seeded.cluster_id
    if target.placeholder == "%s":
        from psycopg.types.json import Json

        for batch in batches:
            now = utcnow()
            with connection.cursor() as cursor:
                cursor.executemany(sql, [(cluster_id, kind, namespace, name, Json(state), digest, stream, now)
                                         for kind, namespace, name, state, digest in batch])
            connection.commit()
    else:  # sqlite3: JSON as text and datetimes as SQLAlchemy stores them there
        for batch in batches:
            now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(sql, [(cluster_id, kind, namespace, name, json.dumps(state), digest, stream, now)
                                         for kind, namespace, name, state, digest in batch])
            connection.execute("COMMIT")


def check_rows(target: Target, apps: int) -> str:
    """What the database holds for the cluster afterwards: rows, app statuses, events."""
    from sqlalchemy import func, select

    from gitops.models import AppStatus, ClusterObject, StatusEvent

    with target.plane.sessions() as session:
        objects = session.scalar(select(func.count()).select_from(ClusterObject)
                                 .where(ClusterObject.cluster_id == target.seeded.cluster_id))
        statuses = session.scalar(select(func.count()).select_from(AppStatus))
        live = session.scalar(select(func.count()).select_from(AppStatus).where(AppStatus.live_version == 1))
        events = session.scalar(select(func.count()).select_from(StatusEvent))
    expected = apps * OBJECTS_PER_APP
    note = "" if objects == expected and statuses == apps and live == apps else "  <-- NOT what was sent"
    return (f"{target.label}: {objects:,} object rows (sent {expected:,}), {statuses:,} app statuses "
            f"({live:,} with live version 1), {events:,} status events{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: PostgreSQL only, 2 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 11, quick 2)")
    parser.add_argument("--apps", type=int, default=2000,
                        help=f"apps in the cluster; {OBJECTS_PER_APP} objects each (default 2000: 10,000 objects)")
    parser.add_argument("--history", choices=("per-app", "shared"), default="per-app",
                        help="each app's Version on a commit of its own (default), or all on one commit")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--profile", action="store_true", help="cProfile listing of one more in-process round")
    args = parser.parse_args()

    import psycopg
    import sqlalchemy
    from pgserver import PostgresServer

    from agent.report import Outbox, Reporter, Tracker

    logging.getLogger().setLevel(logging.ERROR)  # create_app would log every in-process request at INFO
    rounds = args.rounds or (2 if args.quick else 11)
    warmup = 1
    apps = args.apps
    objects = apps * OBJECTS_PER_APP
    use_sqlite = not (args.quick or args.no_sqlite)
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-ingest-"))
    os.chmod(root, 0o755)  # the postgres user keeps its data directory below
    print(f"status_ingest: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}, "
          f"SQLite {sqlite3.sqlite_version}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{objects:,} objects ({apps:,} Applications, {apps:,} Deployments, {apps * PODS_PER_APP:,} Pods) of one "
          f"cluster, {apps:,} apps in {len({synthetic.workspace_name(i) for i in range(apps)})} workspaces; "
          f"batches of {BATCH_SIZE}; history: {HISTORY[args.history]}; rounds {rounds} (+{warmup} warm-up), "
          f"interleaved; temp dir {root}\n", flush=True)

    names_pg = ["ingest over HTTP (PostgreSQL)", "ingest in-process (PostgreSQL)", "raw batched upsert (PostgreSQL)"]
    names_sqlite = ["ingest in-process (SQLite)", "raw batched upsert (SQLite)"] if use_sqlite else []
    peer_names = names_pg + names_sqlite
    # every peer call writes a new generation of every object; one revision commit per generation
    generations = 1 + (warmup + rounds + (1 if args.profile else 0)) * len(peer_names)

    postgres = PostgresServer(root / "pg")
    targets: list[Target] = []
    http = None
    try:
        postgres.start()
        database_url = postgres.create_database("shipyard_ingest")
        pg_dir = root / "postgresql" / "data"
        seeded = seed(database_url, pg_dir, apps, generations, args.history == "per-app")
        pg = Target("PostgreSQL", seeded, open_plane(database_url, pg_dir),
                    psycopg.connect(host="127.0.0.1", port=postgres.port, user="shipyard", dbname="shipyard_ingest"),
                    "%s")
        targets.append(pg)
        print(f"setup PostgreSQL: migrated, cluster and {apps:,} apps seeded, {len(set(seeded.deploys)):,} commit(s) "
              f"holding their versions and {len(seeded.revisions)} revision commits on top, in {seeded.seconds:.1f} s",
              flush=True)
        pg.server = serve("ingest", database_url, pg_dir, workers=2, threads=8)
        import httpx

        http = httpx.Client(base_url=pg.server.url, timeout=httpx.Timeout(60.0, connect=10.0))
        tracker, outbox = Tracker(), Outbox()
        pg.reporter = Reporter(http, seeded.tenant, CLUSTER, seeded.agent_token, tracker, outbox)
        if use_sqlite:
            sqlite_dir = root / "sqlite" / "data"
            sqlite_url = f"sqlite:///{sqlite_dir / 'shipyard.db'}"
            sqlite_seeded = seed(sqlite_url, sqlite_dir, apps, generations, args.history == "per-app")
            raw = sqlite3.connect(sqlite_dir / "shipyard.db", isolation_level=None, check_same_thread=False)
            raw.execute("PRAGMA busy_timeout=60000")
            raw.execute("PRAGMA synchronous=NORMAL")  # as gitops.db sets it on every connection
            targets.append(Target("SQLite", sqlite_seeded, open_plane(sqlite_url, sqlite_dir), raw, "?"))
            print(f"setup SQLite: the same, in {sqlite_seeded.seconds:.1f} s", flush=True)

        # The snapshot that starts each stream: generation 0, untimed by interleave but timed here.
        for target in targets:
            states = object_states(apps, 0, target.seeded.revisions[0])
            started = time.perf_counter()
            if target.reporter is not None:
                for kind, namespace, name, state in states:
                    target.reporter.tracker.observe(kind, namespace, name, state)
                started = time.perf_counter()
                target.reporter.send_pending()
                how = "over HTTP (agent Reporter)"
            else:
                target.stream, target.seq = uuid.uuid4().hex, 0  # a snapshot starts its stream at seq 1
                parts = chunks([Delta(*s) for s in states])
                batches = [decoded(StatusBatch(target.stream, i + 1, True, part, i == len(parts) - 1))
                           for i, part in enumerate(parts)]
                started = time.perf_counter()
                ingest_batches(target, batches)
                how = "in-process"
            seconds = time.perf_counter() - started
            print(f"snapshot {target.label} {how}: {objects:,} objects in {seconds:.2f} s "
                  f"({objects / seconds:,.0f} objects/s)", flush=True)

        # --- the peers ---------------------------------------------------------------------------
        prepared: dict[str, object] = {}
        postgres_pid = postgres._process.pid

        def generation_of(round_index: int, name: str) -> int:
            # in the order timing.interleave runs the peers this round, so every peer moves the apps
            # to a revision that descends from the one before, as ArgoCD does (a peer that moved them
            # back would walk each app's history: a rollback of the branch, not steady churn)
            turn = (peer_names.index(name) - round_index % len(peer_names)) % len(peer_names)
            return 1 + round_index * len(peer_names) + turn

        def setup(round_index: int) -> None:
            """Each peer's new states for this round, in the form it takes them (untimed)."""
            for name in peer_names:
                target = pg if "PostgreSQL" in name else targets[-1]
                generation = generation_of(round_index, name)
                states = object_states(apps, generation, target.seeded.revisions[generation])
                if name.startswith("ingest over HTTP"):
                    for kind, namespace, object_name, state in states:
                        delta = target.reporter.tracker.observe(kind, namespace, object_name, state)
                        if delta is not None:
                            target.reporter.outbox.put(delta)
                    prepared[name] = len(target.reporter.outbox)
                elif name.startswith("ingest in-process"):
                    prepared[name] = [decoded(StatusBatch("later", 1, False, part))  # stream, seq: at the call
                                      for part in chunks([Delta(*s) for s in states])]
                else:
                    prepared[name] = chunks([(*state[:4], Delta(*state).digest) for state in states])

        def measured(target: Target, name: str, work):
            """The peer, with the CPU of this process, the server's processes and PostgreSQL around it."""
            server_pid = target.server.process.pid if target.server else None
            database_pid = postgres_pid if target.label == "PostgreSQL" else None

            def run(round_index: int) -> None:
                before = (time.process_time(), tree_cpu_seconds(server_pid), tree_cpu_seconds(database_pid))
                work()
                after = (time.process_time(), tree_cpu_seconds(server_pid), tree_cpu_seconds(database_pid))
                if round_index >= warmup:
                    target.cpu.setdefault(name, []).append(tuple(b - a for a, b in zip(before, after)))
            return run

        def http_round() -> None:
            pending, resyncs = prepared[names_pg[0]], pg.reporter.resyncs
            sent = pg.reporter.send_pending()
            if sent != pending or pg.reporter.resyncs != resyncs or len(pg.reporter.outbox):
                raise SystemExit(f"ingest over HTTP: sent {sent} of {pending} (resyncs {pg.reporter.resyncs})")

        peers = {names_pg[0]: measured(pg, names_pg[0], http_round),
                 names_pg[1]: measured(pg, names_pg[1], lambda: ingest_batches(pg, prepared[names_pg[1]])),
                 names_pg[2]: measured(pg, names_pg[2], lambda: raw_upsert(pg, prepared[names_pg[2]]))}
        if use_sqlite:
            lite = targets[-1]
            peers[names_sqlite[0]] = measured(lite, names_sqlite[0],
                                              lambda: ingest_batches(lite, prepared[names_sqlite[0]]))
            peers[names_sqlite[1]] = measured(lite, names_sqlite[1],
                                              lambda: raw_upsert(lite, prepared[names_sqlite[1]]))

        print()
        started = time.perf_counter()
        samples = interleave(peers, rounds, warmup=warmup, setup=setup)
        print(f"measured in {time.perf_counter() - started:.0f} s; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        for sample in samples.values():
            print(sample.row(1, " s"))

        rates = {name: objects / samples[name].median for name in peer_names}
        print()
        for name in peer_names:
            target = pg if "PostgreSQL" in name else targets[-1]
            cpu = [statistics.median(c[i] for c in target.cpu[name]) / objects * 1e3 * 1e3 for i in range(3)]
            where = f"this process {cpu[0]:.0f} ms"
            if name.startswith("ingest over HTTP"):
                where = f"agent (this process) {cpu[0]:.0f} ms, server {cpu[1]:.0f} ms"
            if target.label == "PostgreSQL":
                where += f", PostgreSQL {cpu[2]:.0f} ms"
            print(f"{name:<34} {rates[name]:9,.0f} objects/s   CPU per 1,000 objects: {where}")
        print()
        raw_pg = rates[names_pg[2]]
        print(f"ingest over HTTP / raw batched upsert (PostgreSQL)    {ratio(rates[names_pg[0]], raw_pg)}  "
              f"(goal >= 0.50x)")
        print(f"ingest in-process / raw batched upsert (PostgreSQL)   {ratio(rates[names_pg[1]], raw_pg)}  "
              f"(goal >= 0.50x)")
        print(f"ingest over HTTP / ingest in-process (PostgreSQL)     {ratio(rates[names_pg[0]], rates[names_pg[1]])}")
        if use_sqlite:
            print(f"ingest in-process / raw batched upsert (SQLite)       "
                  f"{ratio(rates[names_sqlite[0]], rates[names_sqlite[1]])}")
        print()
        for target in targets:
            print(check_rows(target, apps))

        if args.profile:
            round_index = warmup + rounds
            setup(round_index)
            profiler = cProfile.Profile()
            profiler.enable()
            ingest_batches(pg, prepared[names_pg[1]])
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(35)
            print(f"\ncProfile of one in-process ingest round on PostgreSQL ({objects:,} objects):\n{out.getvalue()}")
    finally:
        if http is not None:
            http.close()
        for target in targets:
            if target.server is not None:
                target.server.stop()
            try:
                target.raw_connection.close()
            except Exception:  # noqa: BLE001 - closing on the way out; the server goes anyway
                pass
            target.plane.close()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)



if __name__ == "__main__":
    main()
