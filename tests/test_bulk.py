"""Many rows in one statement (gitops.db.insert_many / update_many) and commit ancestry for many apps.

The bulk writes run on SQLite and PostgreSQL (one JSON document through
json_to_recordset there): what comes back must be exactly what went in,
whatever the strings hold. The ancestry checks are held to libgit2's own
``descendant_of`` on a history with branches and merges.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from dataclasses import asdict
from pathlib import Path

import pygit2
import pytest
from sqlalchemy import insert, select

from contract.protocol import Delta, Heartbeat, StatusBatch, decode_batch, encode
from gitops.db import insert_many, make_engine, update_many, upgrade
from gitops.models import AppStatus, Application, Cluster, ClusterObject, Tenant, Workspace, utcnow
from gitops.repo import ClusterRepo, _within
from gitops.status import _Ancestry
from tests.plane import database_url  # noqa: F401 - a fixture: SQLite and PostgreSQL

HARD_STRINGS = ["plain", 'quo"te', "back\\slash", "tab\tnew\nline", "ünïcødé ✓ 🚀", "{\"not\": json}", "'", "",
                "NULL", "a,b", "(x)", "\\u0041"]


@pytest.fixture
def engine(database_url):  # noqa: F811 - the fixture above
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def cluster_id(engine) -> int:
    now = utcnow()
    with engine.begin() as connection:
        tenant = connection.execute(insert(Tenant).values(name="t", created_at=now).returning(Tenant.id)).scalar_one()
        return connection.execute(insert(Cluster).values(
            tenant_id=tenant, name="c", profile_text="", repo_path="/nowhere", stream_seq=0, created_at=now,
            updated_at=now).returning(Cluster.id)).scalar_one()


def objects(engine, cluster: int) -> dict[tuple[str, str, str], tuple]:
    with engine.connect() as connection:
        rows = connection.execute(select(ClusterObject.kind, ClusterObject.namespace, ClusterObject.name,
                                         ClusterObject.state, ClusterObject.digest, ClusterObject.stream)
                                  .where(ClusterObject.cluster_id == cluster)).all()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def test_insert_many_keeps_every_value_and_updates_on_conflict(engine, cluster_id):
    table = ClusterObject.__table__
    first = [{"kind": "Pod", "namespace": "ns", "name": f"p{i}-{text}", "digest": None if i % 2 else text,
              "state": {"message": text, "list": [text, None, 1.5, True], "nested": {text: i}}}
             for i, text in enumerate(HARD_STRINGS)]
    common = {"cluster_id": cluster_id, "stream": "one", "updated_at": utcnow()}
    conflict, update = ("cluster_id", "kind", "namespace", "name"), ("state", "digest", "stream", "updated_at")
    with engine.begin() as connection:
        insert_many(connection, table, first, common=common, conflict=conflict, update=update)
    expected = {("Pod", "ns", r["name"]): (r["state"], r["digest"], "one") for r in first}
    assert objects(engine, cluster_id) == expected

    # half of them again with new states, and new ones: existing keys update, new keys insert
    second = [{**r, "state": {"v": 2}, "digest": "d2"} for r in first[::2]] + [
        {"kind": "Deployment", "namespace": "ns", "name": "web", "state": {}, "digest": None}]
    with engine.begin() as connection:
        insert_many(connection, table, second, common={**common, "stream": "two"}, conflict=conflict, update=update)
    expected.update({("Pod", "ns", r["name"]): ({"v": 2}, "d2", "two") for r in first[::2]})
    expected[("Deployment", "ns", "web")] = ({}, None, "two")
    assert objects(engine, cluster_id) == expected
    with engine.begin() as connection:
        insert_many(connection, table, [], common=common)  # nothing to write is no statement at all


def test_update_many_sets_each_row_its_own_values(engine, cluster_id):
    now = utcnow()
    with engine.begin() as connection:
        tenant = connection.execute(select(Cluster.tenant_id).where(Cluster.id == cluster_id)).scalar_one()
        workspace = connection.execute(insert(Workspace).values(
            tenant_id=tenant, cluster_id=cluster_id, name="w", environment="dev", labels={}, quota={},
            created_at=now).returning(Workspace.id)).scalar_one()
        apps = [connection.execute(insert(Application).values(
            tenant_id=tenant, workspace_id=workspace, name=f"a{i}", kind="service", version_counter=0, deleted=False,
            created_at=now, updated_at=now).returning(Application.id)).scalar_one() for i in range(len(HARD_STRINGS))]
        rows = [{"application_id": app, "sync": "Synced", "health": "Healthy", "operation": None, "revision": None,
                 "synced_revision": None, "message": None, "live_version": None, "events": 0} for app in apps]
        insert_many(connection, AppStatus.__table__, rows, common={"updated_at": now})
    later = now + dt.timedelta(seconds=5)
    changed = [{"application_id": app, "health": text[:32], "message": text, "live_version": i or None,
                "events": i} for i, (app, text) in enumerate(zip(apps, HARD_STRINGS)) if i % 3]
    with engine.begin() as connection:
        update_many(connection, AppStatus.__table__, "application_id", changed, common={"updated_at": later})
    with engine.connect() as connection:
        got = {r.application_id: r for r in connection.execute(select(AppStatus))}
    for i, app in enumerate(apps):
        row = got[app]
        if i % 3:
            text = HARD_STRINGS[i]
            assert (row.health, row.message, row.live_version, row.events) == (text[:32], text, i or None, i)
            assert row.updated_at == later and row.sync == "Synced"
        else:
            assert (row.health, row.message, row.events, row.updated_at) == ("Healthy", None, 0, now)


# --- ancestry ------------------------------------------------------------------------------------------


def history(path: Path) -> tuple[pygit2.Repository, list[str]]:
    """Main 0-39; a branch of 12 (40-51) off commit 10 merged (52) with 30; 5 unmerged (53-57) off 20."""
    git = pygit2.init_repository(str(path), bare=True)
    sig = pygit2.Signature("t", "t@example.invalid", 1_700_000_000, 0)
    tree = git.TreeBuilder().write()
    made: list[str] = []

    def commit(parents: list, n: int) -> pygit2.Oid:
        stamp = pygit2.Signature("t", "t@example.invalid", 1_700_000_000 + n, 0)
        oid = git.create_commit(None, stamp, sig, f"c{n}", tree, parents)
        made.append(str(oid))
        return oid

    main = [commit([], 0)]
    for n in range(1, 40):
        main.append(commit([main[-1]], n))
    side = [main[10]]
    for n in range(100, 112):
        side.append(commit([side[-1]], n))
    merged = commit([main[30], side[-1]], 200)
    main.append(merged)
    loose = [main[20]]
    for n in range(300, 305):
        loose.append(commit([loose[-1]], n))
    return git, made


def test_ancestry_agrees_with_libgit2(tmp_path):
    git, commits = history(tmp_path / "repo.git")
    repo = ClusterRepo(tmp_path / "repo.git")
    truth = {(a, b): a == b or git.descendant_of(a, b) for a in commits for b in commits}
    asked = _Ancestry()
    assert {(a, b): asked.reachable(repo, a, b) for a in commits for b in commits} == truth
    for revision in commits:  # one walk per revision, then every answer from what it learned
        learned = _Ancestry()
        learned.learn(repo, revision, set(commits), at_least=1)
        assert {b: learned.reachable(repo, revision, b) for b in commits} == {b: truth[(revision, b)] for b in commits}
    # a commit the repository does not have is unknown, not "unreachable" for good
    missing = "1" * 40
    learned = _Ancestry()
    learned.learn(repo, commits[-1], {missing, *commits[:20]}, at_least=1)
    assert learned.reachable(repo, commits[-1], missing) is False
    assert not any(key[2] == missing for key in learned._known)


def test_short_walk_finds_near_commits_only(tmp_path):
    git, commits = history(tmp_path / "repo.git")
    merge = commits[52]  # main 0-39, the branch 40-51, the merge, the loose branch
    assert _within(git, merge, commits[51], 3) and _within(git, merge, commits[30], 3)  # its parents
    assert _within(git, merge, commits[0], 100)
    assert not _within(git, merge, commits[0], 5)  # too far for the short walk: descendant_of decides
    assert not _within(git, merge, commits[39], 100)  # on main after the branch point, never merged
    assert not _within(git, commits[51], merge, 100)  # newer than the revision


# --- the agent's encoding ------------------------------------------------------------------------------


def test_encoded_status_batch_is_the_dataclass_as_json():
    batch = StatusBatch("s", 3, True, [Delta("Pod", "ns", "p", {"x": [1, {"y": None}]}), Delta("Pod", "ns", "q", None)],
                        final=False, sent_at=12.5)
    sent = json.loads(gzip.decompress(encode(batch)))
    assert sent == asdict(batch)
    assert decode_batch(sent) == batch
    beat = Heartbeat("1.0", "v1.33.1", ["keda"], ["rollouts.argoproj.io"])
    assert json.loads(gzip.decompress(encode(beat))) == asdict(beat)
