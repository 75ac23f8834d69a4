"""The deploy path survives crashes: SIGKILL the server anywhere, the reconciler repairs, nothing is lost or doubled.

The control plane runs as a real server process (tests/serve_plane.py) on
SQLite and on PostgreSQL, and is killed with SIGKILL -- at random moments
while clients deploy (seeded; the seed is printed), and deterministically
between the steps of a deploy (after the intent, before the git commit; after
the git commit, before it is recorded) through the launcher's test-only
``SHIPYARD_TEST_CRASH``. After each crash the reconciler runs in the test
process, as a restarted server would run it once the claims ran out, and
``check_consistency`` asserts that the database and the repository agree:
nothing pending, every accepted deploy committed or superseded, no deployment
in two commits, every app's files the rendering of its highest version, and
``git fsck --strict`` clean.

``SHIPYARD_CRASH_SEED`` and ``SHIPYARD_CRASH_ROUNDS`` replay or lengthen the random rounds.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from gitops.clusters import profile_of
from gitops.commit_step import Ticket
from gitops.models import Cluster, Version
from tests.plane import service_spec
from tests.serve_plane import Plane, PlaneServer, check_consistency, deployment_ids_in_history, seed

SEED = int(os.environ.get("SHIPYARD_CRASH_SEED", "1129"))
ROUNDS = int(os.environ.get("SHIPYARD_CRASH_ROUNDS", "5"))
CLIENTS = 3
ACCEPTED = (200, 201, 202)


class Env:
    """A seeded control plane (database + data dir), servers started on it, and its state opened here."""

    def __init__(self, tmp_path, database_url):
        self.tmp, self.data, self.database_url = tmp_path, tmp_path / "data", database_url
        self.token = seed(self.data, database_url)
        self.plane = Plane(self.data, database_url)
        self.before = set(deployment_ids_in_history(self.plane.repo())[0])
        self.servers: list[PlaneServer] = []
        self.headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/yaml"}

    def start(self, crash: str | None = None, reconcile_interval: float = 0) -> PlaneServer:
        server = PlaneServer(self.data, self.database_url, self.tmp / "server.log", crash=crash,
                             reconcile_interval=reconcile_interval)
        self.servers.append(server)
        server.start()
        return server

    def client(self, server: PlaneServer) -> httpx.Client:
        return httpx.Client(base_url=server.url, headers=self.headers, timeout=120)

    def close(self) -> None:
        for server in self.servers:
            server.kill()
        self.plane.close()

    def history(self) -> tuple[dict[str, list[str]], int]:
        return deployment_ids_in_history(self.plane.repo())

    def version(self, app: str, number: int) -> Version:
        return next(v for v in self.plane.versions() if v.application.name == app and v.number == number)


@pytest.fixture
def env(database_url, tmp_path):
    environment = Env(tmp_path, database_url)
    try:
        yield environment
    finally:
        environment.close()


def deploy(client: httpx.Client, name: str, image: str) -> httpx.Response | None:
    """One deploy; None when the server died before answering."""
    try:
        return client.put("/api/v1/apps", content=service_spec(name, image=image))
    except httpx.TransportError:
        return None


def accepted_version(response: httpx.Response) -> int:
    assert response.status_code in ACCEPTED, response.text
    (version,) = response.json()["versions"]
    return version["number"]


# --- crashes at random moments -------------------------------------------------------------------


def test_random_sigkills_lose_nothing_and_commit_nothing_twice(env):
    rng = random.Random(SEED)
    print(f"crash rounds: seed {SEED} (SHIPYARD_CRASH_SEED replays it), {ROUNDS} rounds")
    accepted: list[tuple[str, int]] = []
    repaired, answered, cut = [], 0, 0
    for round_ in range(ROUNDS):
        server = env.start()
        # The kill lands a random time after a random number of answers, so it falls anywhere in a
        # deploy however fast or slow this machine is today.
        after_answers, delay = rng.randint(0, 6), rng.uniform(0, 0.4)
        results: list[list] = [[] for _ in range(CLIENTS)]
        progress = threading.Condition()

        def client(index: int) -> None:
            with env.client(server) as http:
                for i in range(200):  # bounded: the kill ends it long before
                    name = "web" if i % 2 == 0 else f"app-{index}"  # one app shared by all, one each
                    response = deploy(http, name, f"ghcr.io/acme/{name}:{round_}.{index}.{i}")
                    with progress:
                        results[index].append((name, response))
                        progress.notify_all()
                    if response is None:
                        return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            with progress:
                progress.wait_for(lambda: sum(map(len, results)) >= after_answers, timeout=300)
            time.sleep(delay)
        finally:
            server.kill()
            for thread in threads:
                thread.join(timeout=120)
        for name, response in (item for result in results for item in result):
            if response is None:
                cut += 1
            else:
                answered += 1
                accepted.append((name, accepted_version(response)))
        repaired.append(env.plane.reconcile())
        figures = check_consistency(env.plane, accepted, env.before)
        print(f"round {round_}: killed {delay:.2f}s after {after_answers} answers; "
              f"reconciler repaired {repaired[-1]}; {figures}")
    assert answered > 0 and cut > 0  # deploys were accepted, and kills cut requests short
    print(f"{answered} answered deploys, {cut} cut by a kill, {sum(repaired)} repaired in all")


# --- crashes between the steps -------------------------------------------------------------------


def test_crash_after_intent_is_committed_by_the_reconciler(env):
    server = env.start(crash="after-intent")
    with env.client(server) as http:
        assert deploy(http, "web", "ghcr.io/acme/web:1") is None  # died inside the request
    server.wait()
    version = env.version("web", 1)
    ids, commits = env.history()
    assert version.state == "pending" and version.deployment_id not in ids

    assert env.plane.reconcile() == 1
    version = env.version("web", 1)
    ids, after = env.history()
    assert version.state == "committed" and ids[version.deployment_id] == [version.commit_id]
    assert after == commits + 1
    check_consistency(env.plane, [("web", 1)], env.before)


def test_crash_after_git_commit_is_recorded_not_committed_again(env):
    server = env.start(crash="after-git-commit")
    with env.client(server) as http:
        assert deploy(http, "web", "ghcr.io/acme/web:1") is None
    server.wait()
    version = env.version("web", 1)
    ids, commits = env.history()
    assert version.state == "pending" and len(ids[version.deployment_id]) == 1
    in_git = ids[version.deployment_id][0]

    assert env.plane.reconcile() == 1
    version = env.version("web", 1)
    assert version.state == "committed" and version.commit_id == in_git and version.changed
    assert env.history() == (ids, commits)  # recorded; no second commit
    check_consistency(env.plane, [("web", 1)], env.before)


@pytest.mark.parametrize("mode", ["after-intent", "after-git-commit"])
def test_crash_between_steps_under_a_crowd(env, mode):
    """Several deploys queued in one group commit when the crash lands; then the server works again."""
    # The second commit: the first one's batch is recorded, the crash catches the queue behind it.
    server = env.start(crash=f"{mode}:2")
    names = ["web", "web", "api", "worker", "web", "api"]

    def one(index: int):
        with env.client(server) as http:
            return names[index], deploy(http, names[index], f"ghcr.io/acme/{names[index]}:{index}")

    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(one, range(len(names))))
    server.wait()
    accepted = [(name, accepted_version(r)) for name, r in results if r is not None]
    assert len(accepted) < len(names)  # the crash cut some requests short
    pending = [v for v in env.plane.versions() if v.state == "pending"]
    assert pending
    ids_before, _ = env.history()
    in_git = [v for v in pending if v.deployment_id in ids_before]
    assert bool(in_git) == (mode == "after-git-commit")

    assert env.plane.reconcile() == len(pending)
    for version in in_git:  # recorded with the commit the dead server made
        assert env.version(version.application.name, version.number).commit_id == ids_before[version.deployment_id][0]
    check_consistency(env.plane, accepted, env.before)

    server = env.start()
    with env.client(server) as http:
        for name in sorted(set(names)):
            response = deploy(http, name, f"ghcr.io/acme/{name}:after")
            assert response is not None and response.status_code == 200, response
            accepted.append((name, accepted_version(response)))
    server.kill()
    check_consistency(env.plane, accepted, env.before)


def test_lower_version_never_goes_over_a_higher_one_committed_before_a_crash(env):
    """v1 is pending (crash after intent); v2 is in git but unrecorded (crash after git commit), its claim
    still running. The reconciler may take v1 first: it must supersede it, not commit it over v2."""
    server = env.start(crash="after-intent")
    with env.client(server) as http:
        assert deploy(http, "web", "ghcr.io/acme/web:1") is None
    server.wait()
    server = env.start(crash="after-git-commit")
    with env.client(server) as http:
        assert deploy(http, "web", "ghcr.io/acme/web:2") is None
    server.wait()
    v1, v2 = env.version("web", 1), env.version("web", 2)
    assert v1.state == v2.state == "pending" and v1.claimed_until < v2.claimed_until

    between = v1.claimed_until + (v2.claimed_until - v1.claimed_until) / 2
    assert env.plane.reconcile(now=lambda: between) == 1  # v1's claim ran out, v2's did not
    assert env.version("web", 1).state == "superseded"
    assert env.plane.reconcile() == 1  # v2's ran out too: recorded
    check_consistency(env.plane, [], env.before)
    assert env.version("web", 2).state == "committed"


def test_committer_records_a_deploy_it_finds_already_committed(env):
    """A reconciler that read the log just before a committer died after its git commit hands the
    Version to the committers as still to commit; under the row lock they must find it and record it
    with the commit that carries it (re-applying it would change no bytes and record some later commit)."""
    server = env.start(crash="after-git-commit")
    with env.client(server) as http:
        assert deploy(http, "web", "ghcr.io/acme/web:1") is None
    server.wait()
    server = env.start()  # another app's commit lands on top of the unrecorded one
    with env.client(server) as http:
        assert accepted_version(deploy(http, "api", "ghcr.io/acme/api:1")) == 1
    server.kill()
    version = env.version("web", 1)
    ids, commits = env.history()
    with env.plane.sessions() as session:
        cluster = session.scalar(select(Cluster).where(Cluster.name == "demo"))
    from renderer.render import render
    from renderer.spec import load_specs

    profile = profile_of(cluster)
    (spec,) = load_specs(service_spec("web", image="ghcr.io/acme/web:1"))
    ticket = Ticket(version.id, version.application_id, version.number, "storefront", "web",
                    version.deployment_id, "admin", render(spec, profile))
    env.plane.committers.run(cluster, profile, [ticket])
    assert ticket.state == "committed"
    assert env.history() == (ids, commits)
    assert env.version("web", 1).commit_id == ids[version.deployment_id][0]
    check_consistency(env.plane, [("web", 1), ("api", 1)], env.before)
