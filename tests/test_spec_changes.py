"""What a push to a spec repository changes, read from real git repositories (the git command makes them)."""

from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from contract.errors import InvalidRequest, RepoError
from gitops.spec_changes import PathGlobs, read_changes
from tests.gitserver import git


def commit(work: Path, files: dict[str, str | None], message: str) -> str:
    """Write (or with None delete) files and commit them all; returns the commit id."""
    for path, text in files.items():
        target = work / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    return git(work, "rev-parse", "HEAD")


@pytest.fixture
def specs(tmp_path) -> Path:
    work = tmp_path / "specs"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    return work


def summary(changes) -> list[tuple[str, str]]:
    return [(f.path, f.action) for f in changes.files]


def test_a_fast_forward_names_the_files_added_changed_and_deleted_that_the_globs_own(specs, tmp_path):
    first = commit(specs, {"deploy/web.yaml": "name: web\n", "deploy/team/api.yml": "name: api\n",
                           "deploy/README.md": "specs\n", "other/job.yaml": "name: job\n"}, "first")
    second = commit(specs, {"deploy/web.yaml": "name: web\nreplicas: 2\n", "deploy/team/api.yml": None,
                            "deploy/team/cart.yaml": "name: cart\n", "other/job.yaml": "name: job\nx: 1\n"}, "second")
    repo = pygit2.Repository(str(specs))
    globs = PathGlobs(["deploy/**/*.yaml", "deploy/**/*.yml"])

    initial = read_changes(repo, None, first, globs)
    assert initial.relation == "initial" and not initial.behind
    assert summary(initial) == [("deploy/team/api.yml", "added"), ("deploy/web.yaml", "added")]

    changes = read_changes(repo, first, second, globs)
    assert changes.relation == "fast-forward" and (changes.old, changes.new) == (first, second)
    assert summary(changes) == [("deploy/team/api.yml", "deleted"), ("deploy/team/cart.yaml", "added"),
                                ("deploy/web.yaml", "changed")]
    assert [f.data for f in changes.files] == [None, b"name: cart\n", b"name: web\nreplicas: 2\n"]
    assert read_changes(repo, second, second, globs).relation == "same"
    assert read_changes(repo, second, second, globs).files == []

    # a bare clone, as the control plane keeps one, reads the same
    bare = pygit2.clone_repository(str(specs), str(tmp_path / "mirror.git"), bare=True)
    assert summary(read_changes(bare, first, second, globs)) == summary(changes)


def test_a_force_push_or_a_commit_the_clone_lacks_is_flagged_behind(specs):
    base = commit(specs, {"deploy/web.yaml": "name: web\n"}, "base")
    newer = commit(specs, {"deploy/web.yaml": "name: web\nreplicas: 3\n"}, "newer")
    git(specs, "reset", "-q", "--hard", base)  # history rewritten: the branch goes back past "newer"
    rewritten = commit(specs, {"deploy/api.yaml": "name: api\n"}, "rewritten")
    repo = pygit2.Repository(str(specs))
    globs = PathGlobs()

    changes = read_changes(repo, newer, rewritten, globs)
    assert changes.relation == "rewritten" and changes.behind
    # read tree against tree all the same: web's older spec is what the caller must not deploy blindly
    assert summary(changes) == [("deploy/api.yaml", "added"), ("deploy/web.yaml", "changed")]
    unknown = read_changes(repo, "0" * 40, rewritten, globs)
    assert unknown.relation == "unknown-old" and unknown.behind
    assert summary(unknown) == [("deploy/api.yaml", "added"), ("deploy/web.yaml", "added")]
    with pytest.raises(RepoError, match="fetch it first"):
        read_changes(repo, base, "f" * 40, globs)
    with pytest.raises(RepoError):
        read_changes(repo, base, "main; rm -rf /", globs)


def test_path_globs_match_by_level_and_refuse_what_leaves_the_repository():
    globs = PathGlobs(["deploy/*.yaml", "apps/**/spec.yaml", "svc-?.yml"])
    assert globs.match("deploy/web.yaml") and not globs.match("deploy/team/web.yaml")
    assert globs.match("apps/spec.yaml") and globs.match("apps/a/b/spec.yaml") and not globs.match("apps/a/b/x.yaml")
    assert globs.match("svc-a.yml") and not globs.match("svc-ab.yml") and not globs.match("dir/svc-a.yml")
    assert PathGlobs().match("a/b/c.yaml") and PathGlobs().match("top.yml") and not PathGlobs().match("a.json")
    for bad in ([], ["/etc/*.yaml"], ["../x/*.yaml"], ["deploy/../../x"], [""], ["a\\b"], ["x"] * 51, [7]):
        with pytest.raises(InvalidRequest):
            PathGlobs(bad)


def test_symbolic_links_and_files_outside_the_globs_are_never_read(specs):
    (specs / "deploy").mkdir()
    (specs / "deploy" / "real.yaml").write_text("name: real\n")
    os.symlink("/etc/passwd", specs / "deploy" / "passwd.yaml")
    first = commit(specs, {}, "with a link")
    changes = read_changes(pygit2.Repository(str(specs)), None, first, PathGlobs(["deploy/*.yaml"]))
    assert summary(changes) == [("deploy/real.yaml", "added")]
