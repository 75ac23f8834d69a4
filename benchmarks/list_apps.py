"""Listing 10,000 apps through the API, against the bare SELECT of the same rows.

What it measures
    A control plane database (PostgreSQL from tests/pgserver.py, and SQLite)
    seeded with one cluster, 200 workspaces and 10,000 apps, each with one
    committed Version. The rows are inserted directly, in bulk (SQLAlchemy
    Core): listing reads only the database, so the cluster repository does not
    hold the apps. Peers, taking turns round by round:

    GET in-process       ``GET /api/v1/apps?limit=10000`` through
                         ``app.test_client()``: the whole request (bearer token,
                         authorization, the query, JSON) without the network
    GET over HTTP        the same request to ``shipyard serve`` (gunicorn,
                         1 worker x 8 threads) on loopback with httpx; the
                         body is read, not parsed
    SELECT Core          the bare query: the same join of application,
                         workspace, cluster and (outer) app_status, the same
                         columns, filter, order and limit, through SQLAlchemy Core
    SELECT raw cursor    the same SQL on a raw DB-API cursor (psycopg;
                         sqlite3 on SQLite), ``fetchall``

    Reported: medians (and p90) and the ratios GET in-process / SELECT Core
    and / SELECT raw cursor: what the API costs on top of reading the rows.
    ``--profile`` adds a cProfile listing of the in-process GET.

Run: ``.venv/bin/python benchmarks/list_apps.py [--quick] [--profile] [--no-sqlite]``
(``--quick``: 5 rounds; about a minute, most of it seeding.)
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import logging
import os
import platform
import pstats
import shutil
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import synthetic
from api_deploys import Server, seed, serve
from timing import interleave, ratio

APPS = 10_000
PATH = f"/api/v1/apps?limit={APPS}"

# The listing's own query (gitops.reads.list_apps), written out for the raw cursor.
RAW_SQL = """
SELECT cluster.name, workspace.name, application.name, application.kind, application.current_version,
       application.version_counter, application.deleted, application.updated_at,
       app_status.health, app_status.sync, app_status.operation, app_status.live_version
FROM application
JOIN workspace ON application.workspace_id = workspace.id
JOIN cluster ON workspace.cluster_id = cluster.id
LEFT OUTER JOIN app_status ON app_status.application_id = application.id
WHERE application.tenant_id = {param} AND application.deleted = {false}
ORDER BY cluster.name, workspace.name, application.name
LIMIT {limit}
"""


@dataclass
class Target:
    label: str  # PostgreSQL | SQLite
    app: object  # the Flask app (in-process requests)
    token: str
    server: Server
    tenant_id: int
    raw_connect: object  # () -> a DB-API connection
    seed_seconds: float


def insert_apps(app, apps: int) -> int:
    """10,000 Application rows and one committed Version each, in bulk; returns the tenant id."""
    from sqlalchemy import insert, select

    from gitops.models import Application, Tenant, Version, Workspace, utcnow

    plane = app.extensions["shipyard"]
    now = utcnow()
    with plane.sessions.begin() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == app.config["TENANT"]))
        workspaces = dict(session.execute(select(Workspace.name, Workspace.id)).all())
        rows = [{"tenant_id": tenant_id, "workspace_id": workspaces[synthetic.workspace_name(i)],
                 "name": synthetic.app_name(i), "kind": "service", "version_counter": 1, "current_version": 1,
                 "deleted": False, "created_at": now, "updated_at": now} for i in range(apps)]
        session.execute(insert(Application), rows)
        ids = session.execute(select(Application.id)).scalars().all()
        session.execute(insert(Version), [
            {"application_id": app_id, "number": 1, "action": "deploy", "deployment_id": str(uuid.uuid4()),
             "spec": {"type": "service"}, "spec_digest": "sha256:" + "0" * 64, "state": "committed",
             "commit_id": "0" * 40, "changed": True, "author": "bench", "source": "api", "notes": [],
             "created_at": now, "committed_at": now} for app_id in ids])
    return tenant_id


def prepare(label: str, database_url: str, data_dir: Path, raw_connect) -> Target:
    from webapp import create_app

    started = time.perf_counter()
    token = seed(database_url, data_dir, APPS)  # migrates; token, cluster and the 200 workspaces
    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": database_url, "RECONCILE_INTERVAL": 0})
    tenant_id = insert_apps(app, APPS)
    seconds = time.perf_counter() - started
    server = serve(label, database_url, data_dir, workers=1, threads=8)
    return Target(label, app, token, server, tenant_id, raw_connect, seconds)


def check_same_rows(target: Target, core_rows, raw_rows, body: dict) -> None:
    """The peers must read the same apps, or the comparison means nothing."""
    listed = [(a["cluster"], a["workspace"], a["name"]) for a in body["apps"]]
    if len(listed) != APPS or listed != [tuple(r[:3]) for r in core_rows] or len(raw_rows) != APPS:
        raise SystemExit(f"{target.label}: the API listed {len(listed)} apps, Core read {len(core_rows)}, "
                         f"the raw cursor {len(raw_rows)}: not the same rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds per peer (default 31, quick 5)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--profile", action="store_true", help="cProfile listing of the in-process GET")
    args = parser.parse_args()

    import httpx
    import psycopg
    import sqlalchemy
    from pgserver import PostgresServer
    from sqlalchemy import false, select

    from gitops.models import Application, AppStatus, Cluster, Workspace

    logging.getLogger().setLevel(logging.ERROR)  # create_app would log every in-process request at INFO
    rounds = args.rounds or (5 if args.quick else 31)
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-list-"))
    os.chmod(root, 0o755)  # the postgres user keeps its data directory below
    print(f"list_apps: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}, "
          f"SQLite {sqlite3.sqlite_version}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{APPS:,} apps in 200 workspaces of one cluster; GET {PATH}; rounds {rounds} (+1 warm-up), "
          f"interleaved; temp dir {root}\n", flush=True)

    postgres = PostgresServer(root / "pg")
    targets: list[Target] = []
    clients: list[httpx.Client] = []
    try:
        postgres.start()
        url = postgres.create_database("shipyard_list")
        pg_args = {"host": "127.0.0.1", "port": postgres.port, "user": "shipyard", "dbname": "shipyard_list"}
        targets.append(prepare("PostgreSQL", url, root / "postgresql" / "data", lambda: psycopg.connect(**pg_args)))
        if not args.no_sqlite:
            sqlite_path = root / "sqlite" / "data" / "shipyard.db"
            targets.append(prepare("SQLite", f"sqlite:///{sqlite_path}", sqlite_path.parent,
                                   lambda: sqlite3.connect(sqlite_path)))
        for target in targets:
            print(f"setup {target.label}: migrated, seeded {APPS:,} apps in {target.seed_seconds:.1f} s", flush=True)

        core_query = (
            select(Cluster.name, Workspace.name, Application.name, Application.kind, Application.current_version,
                   Application.version_counter, Application.deleted, Application.updated_at, AppStatus.health,
                   AppStatus.sync, AppStatus.operation, AppStatus.live_version)
            .join(Workspace, Application.workspace_id == Workspace.id)
            .join(Cluster, Workspace.cluster_id == Cluster.id)
            .outerjoin(AppStatus, AppStatus.application_id == Application.id)
            .order_by(Cluster.name, Workspace.name, Application.name)
            .limit(APPS))

        peers = {}
        for target in targets:
            headers = {"Authorization": f"Bearer {target.token}"}
            test_client = target.app.test_client()
            http = httpx.Client(base_url=target.server.url, headers=headers, timeout=120)
            clients.append(http)
            engine = target.app.extensions["shipyard"].engine
            query = core_query.where(Application.tenant_id == target.tenant_id, Application.deleted.is_(false()))
            raw = target.raw_connect()
            placeholder = "%s" if target.label == "PostgreSQL" else "?"
            sql = RAW_SQL.format(param=placeholder, false="false" if target.label == "PostgreSQL" else "0", limit=APPS)

            def get_in_process(_r, client=test_client, headers=headers, label=target.label):
                response = client.get(PATH, headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"{label}: GET {PATH} answered {response.status_code}")
                return response.get_json()

            def get_http(_r, http=http, label=target.label):
                response = http.get(PATH)
                if response.status_code != 200:
                    raise SystemExit(f"{label} over HTTP: GET {PATH} answered {response.status_code}")
                return response.content

            def select_core(_r, engine=engine, query=query):
                with engine.connect() as connection:
                    return connection.execute(query).all()

            def select_raw(_r, raw=raw, sql=sql, tenant_id=target.tenant_id):
                cursor = raw.cursor()
                cursor.execute(sql, (tenant_id,))
                rows = cursor.fetchall()
                cursor.close()
                raw.rollback()  # end the read transaction, as the pooled connections do
                return rows

            check_same_rows(target, select_core(0), select_raw(0), get_in_process(0))
            peers[f"GET in-process      {target.label}"] = get_in_process
            peers[f"GET over HTTP       {target.label}"] = get_http
            peers[f"SELECT Core         {target.label}"] = select_core
            peers[f"SELECT raw cursor   {target.label}"] = select_raw

        started = time.perf_counter()
        samples = interleave(peers, rounds, warmup=1)
        print(f"\nmeasured in {time.perf_counter() - started:.0f} s\n")
        for sample in samples.values():
            print(sample.row())
        print()
        for target in targets:
            def median(kind: str) -> float:
                return samples[f"{kind:<19} {target.label}"].median

            print(f"{target.label}: GET in-process / SELECT Core {ratio(median('GET in-process'), median('SELECT Core'))}, "
                  f"/ SELECT raw cursor {ratio(median('GET in-process'), median('SELECT raw cursor'))}; "
                  f"GET over HTTP / in-process {ratio(median('GET over HTTP'), median('GET in-process'))}")

        if args.profile:
            for target, peer in zip(targets, [n for n in peers if n.startswith("GET in-process")]):
                profiler = cProfile.Profile()
                profiler.enable()
                for r in range(5):
                    peers[peer](r)
                profiler.disable()
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.strip_dirs().sort_stats("cumulative").print_stats(30)
                text = out.getvalue()
                print(f"\n=== cProfile: {peer.strip()} (5 requests) ===\n" + text[text.find("   Ordered by"):])
    finally:
        for http in clients:
            http.close()
        for target in targets:
            target.server.stop()
            target.app.extensions["shipyard"].close()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
