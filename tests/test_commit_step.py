"""The commit step's decisions, as pure functions, and the repository walk the crash repair reads.

The commit step and the reconciler themselves run against real databases and repositories in
test_concurrency.py and test_crash.py; here are the small parts they are built from.
"""

import datetime as dt
import time

import pytest

from gitops import apply as apply_service
from gitops.commit_step import deployment_ids, next_step
from gitops.reconciler import deployments_in_log
from gitops.repo import ClusterRepo
from renderer.profiles import load_profile
from renderer.render import render
from renderer.spec import load_specs

PROFILE = load_profile("fixtures/clusters/demo.yaml")


@pytest.mark.parametrize(("state", "in_git", "number", "newest_committed", "step"), [
    ("committed", False, 3, 0, "elsewhere"),
    ("superseded", True, 3, 5, "elsewhere"),  # finished elsewhere wins over everything
    ("failed", False, 3, 0, "elsewhere"),
    ("pending", True, 3, 5, "record"),  # in a commit already: record it, never commit it twice
    ("pending", True, 3, 0, "record"),
    ("pending", False, 3, 5, "supersede"),  # a higher Version is committed: the repository never goes back
    ("pending", False, 3, 3, "commit"),
    ("pending", False, 3, 2, "commit"),
    ("pending", False, 1, 0, "commit"),  # the app's first Version
])
def test_next_step_of_a_version(state, in_git, number, newest_committed, step):
    assert next_step(state, in_git, number, newest_committed) == step


def test_deployment_ids_come_from_trailers_only():
    message = ("Deploy team-a/api\n\nShipyard-Deployment-Id was mentioned here\n\n"
               f"{apply_service.TRAILER_DEPLOYMENT}: dep-1\n{apply_service.TRAILER_DEPLOYMENT}:  dep-2 \n")
    assert deployment_ids(message) == ["dep-1", "dep-2"]
    assert deployment_ids("Deploy team-a/api\n") == []


def _spec(name: str) -> str:
    return (f"type: service\nname: {name}\nworkspace_fqn: demo:team-a\n"
            "image: {type: image, image_uri: 'ghcr.io/acme/api:1.0'}\nports: [{port: 8000}]\n")


def test_messages_since_walks_down_to_the_horizon(tmp_path):
    repo = ClusterRepo(tmp_path / "demo.git")
    assert list(repo.messages_since(0)) == []  # no branch yet
    commits = {}
    for name, deployment in (("api", "dep-a"), ("web", "dep-b")):
        rendering = [render(spec, PROFILE) for spec in load_specs(_spec(name))]
        commits[deployment] = str(apply_service.apply(rendering, PROFILE, repo, deployment_id=deployment).commit_id)
    walked = list(repo.messages_since(0))
    assert {commit_id for commit_id, _ in walked} == set(commits.values())
    assert all(isinstance(message, str) for _, message in walked)
    assert list(repo.messages_since(time.time() + 3600)) == []  # every commit is older than the horizon
    assert deployments_in_log(repo, dt.datetime.now(dt.timezone.utc)) == commits
    assert deployments_in_log(repo, dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)) == {}
