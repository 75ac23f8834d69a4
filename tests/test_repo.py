"""Cluster repositories on real git repositories in temp dirs."""

import subprocess
import sys
import threading

import pygit2
import pytest
import yaml

from gitops import apply as apply_service
from gitops import layout
from gitops.repo import DELETE, ClusterRepo, Directory
from contract.errors import AppNotFound, RepoError, SpecError
from renderer.profiles import load_profile
from renderer.render import render
from renderer.spec import load_specs

PROFILE = load_profile("fixtures/clusters/demo.yaml")


def service(name: str, workspace: str = "team-a", image: str = "ghcr.io/acme/api:1.0", extra: str = "") -> str:
    return (
        f"type: service\nname: {name}\nworkspace_fqn: demo:{workspace}\n"
        f"image: {{type: image, image_uri: '{image}'}}\nports: [{{port: 8000}}]\n{extra}"
    )


def rendered(text: str):
    return [render(spec, PROFILE) for spec in load_specs(text)]


def git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    return ClusterRepo(tmp_path / "demo.git")


def test_first_apply_creates_the_layout_with_bootstrap(repo):
    result = apply_service.apply(rendered(service("api")), PROFILE, repo, author="Alice <alice@example.com>")
    assert result.changed and [a.action for a in result.apps] == ["created"]
    files = repo.snapshot().walk()
    assert set(files) == {
        "bootstrap/project.yaml",
        "bootstrap/root.yaml",
        "bootstrap/apps.yaml",
        "apps/team-a.yaml",
        "apps/team-a/api.yaml",
        "workspaces/team-a/namespace.yaml",
        "workspaces/team-a/api/deployment-api.yaml",
        "workspaces/team-a/api/service-api.yaml",
        "workspaces/team-a/api/serviceaccount-api.yaml",
    }
    project = yaml.safe_load(files["bootstrap/project.yaml"])
    assert project["kind"] == "AppProject"
    assert [d["namespace"] for d in project["spec"]["destinations"]] == ["team-a"]
    root = yaml.safe_load(files["bootstrap/root.yaml"])
    assert root["spec"]["source"]["path"] == "bootstrap"  # the root syncs the bootstrap, itself included
    apps = yaml.safe_load(files["bootstrap/apps.yaml"])
    assert apps["spec"]["source"]["path"] == "apps" and apps["spec"]["source"]["directory"]["recurse"] is True
    app = yaml.safe_load(files["apps/team-a/api.yaml"])
    assert app["spec"]["source"]["path"] == "workspaces/team-a/api"
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert app["metadata"]["annotations"]["argocd.argoproj.io/manifest-generate-paths"] == "."
    assert repo.repo.is_bare


def test_commit_message_and_trailers(repo):
    result = apply_service.apply(
        rendered(service("api")), PROFILE, repo, author="Alice <alice@example.com>",
        source_commit="0123abcd", deployment_id="dep-42",
    )
    commit = repo.repo[result.commit_id]
    assert commit.message.startswith("Deploy team-a/api\n")
    assert "team-a/api: created" in commit.message
    trailers = git("-C", str(repo.path), "log", "-1", "--format=%(trailers:only,unfold)")
    spec_digest = load_specs(service("api"))[0].digest
    assert "Shipyard-Deployment-Id: dep-42" in trailers
    assert f"Shipyard-Spec-Digest: team-a/api {spec_digest}" in trailers
    assert "Shipyard-Author: Alice <alice@example.com>" in trailers
    assert "Shipyard-Source-Commit: 0123abcd" in trailers
    assert commit.author.email == "alice@example.com"


def test_unchanged_bytes_make_no_commit(repo):
    first = apply_service.apply(rendered(service("api")), PROFILE, repo)
    again = apply_service.apply(rendered(service("api")), PROFILE, repo)
    assert first.changed and not again.changed
    assert [a.action for a in again.apps] == ["unchanged"]
    assert len(repo.log()) == 1


def test_update_replaces_the_app_directory_exactly(repo):
    apply_service.apply(rendered(service("api", extra="replicas: {min_replicas: 2, max_replicas: 4}\n")), PROFILE, repo)
    assert repo.snapshot().read("workspaces/team-a/api/scaledobject-api.yaml") is not None
    result = apply_service.apply(rendered(service("api", extra="replicas: 1\n")), PROFILE, repo)
    assert [a.action for a in result.apps] == ["updated"]
    names = repo.snapshot().list_dir("workspaces/team-a/api")
    assert "scaledobject-api.yaml" not in names and "poddisruptionbudget-api.yaml" not in names
    app = yaml.safe_load(repo.snapshot().read("apps/team-a/api.yaml"))
    assert "ignoreDifferences" not in app["spec"]


def test_other_apps_are_untouched(repo):
    apply_service.apply(rendered(service("api") + "---\n" + service("web", "team-b")), PROFILE, repo)
    before = repo.snapshot()
    apply_service.apply(rendered(service("api", image="ghcr.io/acme/api:2.0")), PROFILE, repo)
    after = repo.snapshot()
    assert before.tree_id("workspaces/team-b") == after.tree_id("workspaces/team-b")
    assert before.tree_id("apps/team-b") == after.tree_id("apps/team-b")
    assert before.tree_id("workspaces/team-a/api") != after.tree_id("workspaces/team-a/api")


def test_delete_removes_directory_and_application_in_one_commit(repo):
    apply_service.apply(rendered(service("api") + "---\n" + service("web")), PROFILE, repo)
    result = apply_service.delete(PROFILE, repo, "team-a", "api", author="bob")
    snapshot = repo.snapshot()
    assert snapshot.tree_id("workspaces/team-a/api") is None
    assert snapshot.tree_id("apps/team-a/api.yaml") is None
    assert snapshot.tree_id("workspaces/team-a/web") is not None
    assert snapshot.read("workspaces/team-a/namespace.yaml") is not None
    commit = repo.repo[result.commit_id]
    assert commit.message.startswith("Delete team-a/api") and len(commit.parents) == 1
    with pytest.raises(AppNotFound):
        apply_service.delete(PROFILE, repo, "team-a", "api")
    assert len(repo.log()) == 2


def test_git_clone_shows_the_same_files(repo, tmp_path):
    apply_service.apply(rendered(service("api") + "---\n" + service("web", "team-b")), PROFILE, repo)
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo.path), str(clone))
    on_disk = {
        str(p.relative_to(clone)): p.read_bytes() for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts
    }
    assert on_disk == repo.snapshot().walk()
    assert git("-C", str(clone), "status", "--porcelain") == ""
    git("-C", str(repo.path), "fsck", "--strict", "--no-progress")


def test_paths_outside_the_tree_are_refused(repo):
    for path in ("../escape.yaml", "a/../../b", ".git/config", "a/./b"):
        with pytest.raises(RepoError):
            repo.commit(lambda base, p=path: {p: b"x"}, "x")
    assert repo.tip() is None


def test_directory_and_delete_changes(repo):
    repo.commit(lambda base: {"d/a": b"1", "d/sub/b": b"2", "e": b"3"}, "one")
    repo.commit(lambda base: {"d": Directory({"c": b"4"}), "e": DELETE}, "two")
    assert repo.snapshot().walk() == {"d/c": b"4"}


def test_directory_replacement_reuses_unchanged_subtrees_and_drops_stale_files(repo):
    repo.commit(lambda base: {"d": Directory({"keep/x": b"1", "edit": b"2", "gone/y": b"3"})}, "one")
    before = repo.snapshot()
    repo.commit(lambda base: {"d": Directory({"keep/x": b"1", "edit": b"22", "new/z": b"4"})}, "two")
    after = repo.snapshot()
    assert after.walk() == {"d/keep/x": b"1", "d/edit": b"22", "d/new/z": b"4"}
    assert after.tree_id("d/keep") == before.tree_id("d/keep")
    result = repo.commit(lambda base: {"d": Directory({"keep/x": b"1", "edit": b"22", "new/z": b"4"})}, "three")
    assert result.commit_id is None and repo.snapshot().tree_id("d") == after.tree_id("d")


def test_a_file_can_become_a_directory_and_back(repo):
    repo.commit(lambda base: {"d/a": b"1"}, "one")
    repo.commit(lambda base: {"d/a/b": b"2"}, "two")
    assert repo.snapshot().walk() == {"d/a/b": b"2"}
    repo.commit(lambda base: {"d": Directory({"a": b"3"})}, "three")
    assert repo.snapshot().walk() == {"d/a": b"3"}
    git("-C", str(repo.path), "fsck", "--strict", "--no-progress")


def test_a_lock_left_by_a_dead_writer_is_cleared(repo):
    import os
    import time

    repo.commit(lambda base: {"a": b"1"}, "one")
    lock = repo.path / "refs/heads/main.lock"
    lock.write_text("left by a killed process")
    old = time.time() - 120
    os.utime(lock, (old, old))
    result = repo.commit(lambda base: {"a": b"2"}, "two")
    assert result.commit_id is not None and repo.snapshot().read("a") == b"2"
    assert not lock.exists()


def test_threads_never_lose_an_update(repo):
    apply_service.apply(rendered(service("seed")), PROFILE, repo)
    count = 16
    renderings = [rendered(service(f"app-{i}", workspace=f"ws-{i % 3}")) for i in range(count)]
    errors = []
    barrier = threading.Barrier(count)

    def writer(r):
        try:
            barrier.wait()
            apply_service.apply(r, PROFILE, ClusterRepo(repo.path))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(r,)) for r in renderings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(repo.log()) == count + 1
    snapshot = repo.snapshot()
    for i in range(count):
        assert snapshot.tree_id(f"workspaces/ws-{i % 3}/app-{i}") is not None
    project = yaml.safe_load(snapshot.read("bootstrap/project.yaml"))
    assert {d["namespace"] for d in project["spec"]["destinations"]} == {"team-a", "ws-0", "ws-1", "ws-2"}


WRITER = """
import sys
from gitops import apply as apply_service
from gitops.repo import ClusterRepo
from renderer.profiles import load_profile
from renderer.render import render
from renderer.spec import load_specs
profile = load_profile("fixtures/clusters/demo.yaml")
repo_path, start = sys.argv[1], sys.argv[2]
for i in range(int(sys.argv[3])):
    name = f"p{start}-{i}"
    text = f"type: service\\nname: {name}\\nworkspace_fqn: demo:procs\\nimage: {{type: image, image_uri: x}}\\n"
    apply_service.apply([render(s, profile) for s in load_specs(text)], profile, ClusterRepo(repo_path))
"""


def test_processes_never_lose_an_update(repo):
    apply_service.apply(rendered(service("seed")), PROFILE, repo)
    processes, per_process = 4, 5
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(repo.path), str(n), str(per_process)])
        for n in range(processes)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * processes
    assert len(repo.log()) == processes * per_process + 1
    names = set(layout.apps_in(repo.snapshot(), "procs"))
    assert names == {f"p{n}-{i}" for n in range(processes) for i in range(per_process)}
    git("-C", str(repo.path), "fsck", "--strict", "--no-progress")


def test_push_to_a_remote(tmp_path):
    remote = pygit2.init_repository(str(tmp_path / "remote.git"), bare=True, initial_head="main")
    repo = ClusterRepo(tmp_path / "local.git", remote_url=str(tmp_path / "remote.git"))
    result = apply_service.apply(rendered(service("api")), PROFILE, repo)
    assert result.pushed
    assert str(remote.lookup_reference("refs/heads/main").target) == result.commit_id
    assert repo.tip() == remote.lookup_reference("refs/heads/main").target


def test_push_rejected_as_non_fast_forward_rebuilds_on_the_new_tip(tmp_path):
    remote_path = tmp_path / "remote.git"
    pygit2.init_repository(str(remote_path), bare=True, initial_head="main")
    ours = ClusterRepo(tmp_path / "ours.git", remote_url=str(remote_path))
    theirs = ClusterRepo(tmp_path / "theirs.git", remote_url=str(remote_path))
    apply_service.apply(rendered(service("seed")), PROFILE, ours)

    interfered = []
    renderings = rendered(service("mine"))
    original_build = ClusterRepo._prepare

    def racing_prepare(self, base, build, message, author):
        # Another control plane pushes between our fetch and our push, once.
        if self is ours and not interfered:
            interfered.append(True)
            apply_service.apply(rendered(service("theirs", workspace="team-b")), PROFILE, theirs)
        return original_build(self, base, build, message, author)

    ClusterRepo._prepare = racing_prepare
    try:
        result = apply_service.apply(renderings, PROFILE, ours)
    finally:
        ClusterRepo._prepare = original_build
    assert result.pushed and result.attempts == 2
    clone = tmp_path / "clone"
    git("clone", "-q", str(remote_path), str(clone))
    assert (clone / "workspaces/team-a/mine").is_dir()
    assert (clone / "workspaces/team-b/theirs").is_dir()
    assert (clone / "workspaces/team-a/seed").is_dir()
    project = yaml.safe_load((clone / "bootstrap/project.yaml").read_text())
    assert {d["namespace"] for d in project["spec"]["destinations"]} == {"team-a", "team-b"}
    log = git("-C", str(clone), "log", "--format=%s")
    assert log.splitlines() == ["Deploy team-a/mine", "Deploy team-b/theirs", "Deploy team-a/seed"]


BLUE_GREEN = "rollout_strategy: {type: blue_green, enable_auto_promotion: true}\n"


def test_preview_service_clash_with_an_existing_app_is_refused(repo):
    apply_service.apply(rendered(service("catalog-preview")), PROFILE, repo)
    with pytest.raises(SpecError) as err:
        apply_service.apply(rendered(service("catalog", extra=BLUE_GREEN)), PROFILE, repo)
    assert 'Service "catalog-preview" would also belong to another app' in str(err.value)
    assert len(repo.log()) == 1


def test_preview_service_clash_the_other_way_and_within_one_apply(repo):
    apply_service.apply(rendered(service("catalog", extra=BLUE_GREEN)), PROFILE, repo)
    with pytest.raises(SpecError):
        apply_service.apply(rendered(service("catalog-preview")), PROFILE, repo)
    with pytest.raises(SpecError):
        apply_service.apply(rendered(service("shop", extra=BLUE_GREEN) + "---\n" + service("shop-preview")), PROFILE, repo)
    # Names that only look alike are fine: "catalog" without blue-green has no preview Service.
    apply_service.apply(rendered(service("cart") + "---\n" + service("cart-preview")), PROFILE, repo)


CANARY = "rollout_strategy: {type: canary, steps: [{weight_percentage: 20}]}\n"


def test_any_object_named_after_another_app_is_refused_not_only_services(repo):
    """A canary's -stable/-canary Services and its -mesh VirtualService are named after it as the preview is:
    an app already called so in the workspace would have them taken over, whatever their kind."""
    exposed = "ports: [{port: 8000, host: mesh.example.com}]\n"
    apply_service.apply(rendered(service("shop-mesh").replace("ports: [{port: 8000}]\n", exposed)), PROFILE, repo)
    with pytest.raises(SpecError) as err:
        apply_service.apply(rendered(service("shop", extra=CANARY)), PROFILE, repo)
    assert 'VirtualService "shop-mesh" would also belong to another app of workspace "team-a"' in str(err.value)
    # the same name as another kind is no clash: an unexposed "tea-mesh" has a Service, "tea"'s is a VirtualService
    apply_service.apply(rendered(service("tea-mesh") + "---\n" + service("tea", extra=CANARY)), PROFILE, repo)
    apply_service.apply(rendered(service("cart-stable")), PROFILE, repo)
    with pytest.raises(SpecError) as err:
        apply_service.apply(rendered(service("cart", extra=CANARY)), PROFILE, repo)
    assert 'Service "cart-stable" would also belong to another app of workspace "team-a"' in str(err.value)
    assert len(repo.log()) == 3
