"""``shipyard plan``: what a merge request's specs would change, from the control plane or offline.

The core (gitops.plan) against real repositories in temp dirs: an app added, changed, removed
(with prune, only in the workspaces the specs name) and unchanged, a removed app's files going
to /dev/null, what the commit would refuse refused. The Markdown comment against a stored
rendering (tests/expected/plan.md), within GitHub's 65,536 characters however long the diffs,
with every fence closed and nothing from a spec read as markup. End to end: the same directory
planned by the real ``shipyard`` command against a control plane on loopback and offline against
a ``git clone`` of that control plane's repository gives the same document and the same
Markdown, with the exit codes 0, 1 and 2; a token that may not read the workspace sees nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from cli import plan_format
from contract.errors import RepoError, SpecError
from gitops import apply as apply_service
from gitops import plan
from gitops.repo import ClusterRepo
from renderer.render import render
from renderer.spec import load_specs
from tests.plane import PROFILE, add_cluster, add_workspace, deploy_yaml, make_user, served  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests" / "expected" / "plan.md"
DEMO = ROOT / "fixtures" / "clusters" / "demo.yaml"
SPOT = "resources: {node: {type: node_selector, capacity_type: spot}}\n"


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the plan reads the database as a deploy does, and is about the repository."""
    return f"sqlite:///{tmp_path / 'shipyard.db'}"


def spec(name: str, workspace: str = "storefront", image: str = "ghcr.io/acme/web:1.0", extra: str = "") -> str:
    return (f"type: service\nname: {name}\nworkspace_fqn: demo:{workspace}\n"
            f"image: {{type: image, image_uri: '{image}'}}\nports: [{{port: 8000}}]\n{extra}")


@pytest.fixture
def renders(cluster, kube_schemas):
    profile = cluster("demo")

    def rendering(text: str, file: str = "<test>"):
        (loaded,) = load_specs(text, file)
        return render(loaded, profile, kube_schemas)

    rendering.profile = profile
    return rendering


@pytest.fixture
def repo(tmp_path, renders):
    """The demo cluster's repository with storefront/web, api and old, and data/keep deployed."""
    repository = ClusterRepo(tmp_path / "demo.git")
    deployed = [renders(spec("web")), renders(spec("api")), renders(spec("old")), renders(spec("keep", "data"))]
    apply_service.apply(deployed, renders.profile, repository)
    return repository


def merge_request(renders) -> list:
    """The specs of a merge request: web changed, api as it is, cart new (old is gone from the directory)."""
    return [renders(spec("web", image="ghcr.io/acme/web:2.0"), "specs/web.yaml"),
            renders(spec("api"), "specs/api.yaml"),
            renders(spec("cart", extra=SPOT), "specs/cart.yaml")]


# --- the core -------------------------------------------------------------------------------------


def test_each_app_is_added_changed_removed_or_unchanged(repo, renders):
    document = plan.plan([("demo", repo.snapshot(), merge_request(renders))], prune=True)
    assert json.loads(json.dumps(document)) == document  # a plain document, as the API answers it
    (cluster,) = document["clusters"]
    assert cluster["cluster"] == "demo" and cluster["commit"] == str(repo.tip())
    actions = {app["app"]: app["action"] for app in cluster["apps"]}
    # data/keep: its workspace is named by no spec, so prune leaves it alone
    assert actions == {"storefront/api": "unchanged", "storefront/cart": "added", "storefront/old": "removed",
                       "storefront/web": "changed"}
    assert list(actions) == sorted(actions)
    assert cluster["counts"] == {"added": 1, "changed": 1, "removed": 1, "unchanged": 1}
    assert document["changes"] == 3 and document["prune"] is True

    apps = {app["app"]: app for app in cluster["apps"]}
    web = apps["storefront/web"]
    assert web["spec"] == "specs/web.yaml"
    assert [f["path"] for f in web["files"]] == ["workspaces/storefront/web/deployment-web.yaml"]
    assert web["files"][0]["change"] == "modified"
    assert "-        image: ghcr.io/acme/web:1.0\n+        image: ghcr.io/acme/web:2.0\n" in web["diff"]
    assert web["diff"].startswith("--- a/workspaces/storefront/web/deployment-web.yaml\n"
                                  "+++ b/workspaces/storefront/web/deployment-web.yaml\n")
    assert apps["storefront/api"]["files"] == [] and apps["storefront/api"]["diff"] == ""
    cart = apps["storefront/cart"]
    assert {f["change"] for f in cart["files"]} == {"added"} and "apps/storefront/cart.yaml" in \
        [f["path"] for f in cart["files"]]
    assert cart["notes"] == ["kind clusters have no spot capacity; capacity_type spot is ignored"]


def test_a_removed_apps_files_go_to_dev_null(repo, renders):
    document = plan.plan([("demo", repo.snapshot(), merge_request(renders))], prune=True)
    old = next(app for app in document["clusters"][0]["apps"] if app["app"] == "storefront/old")
    held = repo.snapshot().walk("workspaces/storefront/old")
    held["apps/storefront/old.yaml"] = repo.snapshot().read("apps/storefront/old.yaml")
    assert [f["path"] for f in old["files"]] == sorted(held)
    for entry in old["files"]:
        assert entry["change"] == "removed" and entry["added"] == 0
        assert entry["removed"] == held[entry["path"]].decode().count("\n")
        assert f"--- a/{entry['path']}\n+++ /dev/null\n" in old["diff"]
    assert old["spec"] is None and old["notes"] == []


def test_without_prune_nothing_is_removed_and_an_unchanged_plan_has_no_changes(repo, renders):
    document = plan.plan([("demo", repo.snapshot(), merge_request(renders))])
    assert "removed" not in {app["action"] for app in document["clusters"][0]["apps"]}
    as_deployed = [renders(spec("web")), renders(spec("keep", "data"))]
    same = plan.plan([("demo", repo.snapshot(), as_deployed)])
    assert same["changes"] == 0 and {a["action"] for a in same["clusters"][0]["apps"]} == {"unchanged"}
    pruned = plan.plan([("demo", repo.snapshot(), as_deployed)], prune=True)
    # prune over storefront and data: api and old are not in this directory, keep is
    assert {a["app"]: a["action"] for a in pruned["clusters"][0]["apps"]} == {
        "data/keep": "unchanged", "storefront/api": "removed", "storefront/old": "removed",
        "storefront/web": "unchanged"}
    assert pruned["changes"] == 2


def test_a_plan_refuses_what_the_commit_would(repo, renders):
    routed = "ports: [{port: 8000, expose: true, host: shop.example.com, path: /}]\n"
    owner = spec("web").replace("ports: [{port: 8000}]\n", routed)
    apply_service.apply([renders(owner)], renders.profile, repo)
    taker = spec("shop").replace("ports: [{port: 8000}]\n", routed)
    with pytest.raises(SpecError) as refused:
        plan.plan([("demo", repo.snapshot(), [renders(taker, "specs/shop.yaml")])])
    assert refused.value.problems[0].file == "specs/shop.yaml"
    assert "storefront/web" in refused.value.problems[0].message


def test_a_clone_is_read_bare_or_not_and_never_written(repo, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone)], check=True, timeout=60)
    assert plan.read_clone(clone, "main").commit_id == repo.tip()
    assert plan.read_clone(repo.path, "main").commit_id == repo.tip()
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "-b", "topic"], check=True, timeout=60)
    subprocess.run(["git", "-C", str(clone), "branch", "-q", "-D", "main"], check=True, timeout=60)
    assert plan.read_clone(clone, "main").commit_id == repo.tip()  # origin/main
    with pytest.raises(RepoError, match='no branch "production"'):
        plan.read_clone(clone, "production")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepoError, match="not a git repository"):
        plan.read_clone(plain, "main")
    assert list(plain.iterdir()) == []
    with pytest.raises(RepoError, match="not a git repository"):
        plan.read_clone(clone / "workspaces", "main")  # inside a clone is not the clone


def test_a_file_diff_counts_lines_that_look_like_headers_as_content():
    files, diff = plan.file_changes({"a.yaml": b"x: 1\n-- y\n"}, {"a.yaml": b"x: 1\n++ z\n", "b.yaml": b"k: v"})
    assert files == [{"path": "a.yaml", "change": "modified", "added": 1, "removed": 1},
                     {"path": "b.yaml", "change": "added", "added": 1, "removed": 0}]
    assert "--- y\n+++ z\n" in diff
    assert diff.endswith("+k: v\n\\ No newline at end of file\n")
    quoted, _ = plan.file_changes({"c.yaml": 'k: "a\u2028b\fc"\n'.encode()}, {"c.yaml": b"k: d\n"})
    assert quoted == [{"path": "c.yaml", "change": "modified", "added": 1, "removed": 1}]  # lines end at newlines


# --- Markdown -------------------------------------------------------------------------------------


def parser() -> MarkdownIt:
    """CommonMark with raw HTML and GitHub's tables, as GitHub renders a comment."""
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def stored_plan(repo, renders) -> dict:
    document = plan.plan([("demo", repo.snapshot(), merge_request(renders))], prune=True)
    document["clusters"][0]["commit"] = "0123456789abcdef0123456789abcdef01234567"  # the repository's varies
    return document


def test_the_comment_is_the_stored_rendering(repo, renders):
    comment = plan_format.markdown(stored_plan(repo, renders))
    if os.environ.get("SHIPYARD_TEST_UPDATE_EXPECTED"):
        EXPECTED.write_text(comment)
    assert comment == EXPECTED.read_text(), f"set SHIPYARD_TEST_UPDATE_EXPECTED=1 to write {EXPECTED} again, and read it"


def test_the_comment_shows_each_diff_whole_in_a_collapsible_section(repo, renders):
    document = stored_plan(repo, renders)
    tokens = parser().parse(plan_format.markdown(document))
    fences = [t.content for t in tokens if t.type == "fence"]
    changed = [app for app in document["clusters"][0]["apps"] if app["action"] != "unchanged"]
    assert fences == [app["diff"] for app in changed]
    html = "".join(t.content for t in tokens if t.type == "html_block")
    assert html.count("<details>") == html.count("</details>") == len(changed)
    assert "<code>~ storefront/web</code> changed from <code>specs/web.yaml</code>: 1 file, +2 -2" in html


def big_plan(apps: int, lines: int) -> dict:
    """A plan of ``apps`` changed apps, each diff ``lines`` lines long, with backticks in some lines."""
    listed = []
    for number in range(apps):
        path = f"workspaces/big/app{number:03}/configmap-app{number:03}.yaml"
        body = "".join(f"+  line{index}: {'```' if index % 50 == 0 else 'value'} {'x' * 40}\n" for index in range(lines))
        listed.append({"app": f"big/app{number:03}", "action": "changed", "spec": f"specs/app{number:03}.yaml",
                       "notes": [], "files": [{"path": path, "change": "modified", "added": lines, "removed": 0}],
                       "diff": f"--- a/{path}\n+++ b/{path}\n@@ -1,0 +1,{lines} @@\n{body}"})
    return {"prune": False, "changes": apps, "clusters": [{
        "cluster": "demo", "commit": "0" * 40,
        "counts": {"added": 0, "changed": apps, "removed": 0, "unchanged": 0}, "apps": listed}]}


def check_comment(document: dict, comment: str) -> list:
    """A comment within the limit whose fences each hold one app's diff, whole; returns its tokens."""
    assert len(comment) <= plan_format.COMMENT_LIMIT
    tokens = parser().parse(comment)
    diffs = {app["diff"] for cluster in document["clusters"] for app in cluster["apps"]}
    assert all(t.content in diffs for t in tokens if t.type == "fence"), "a diff was cut, or a fence closed early"
    html = "".join(t.content for t in tokens if t.type == "html_block")
    assert html.count("<details>") == html.count("</details>")
    return tokens


@pytest.mark.parametrize(("apps", "lines"), [(3, 2000), (40, 300), (2000, 1)], ids=["long", "many", "very many"])
def test_a_long_plan_is_summarised_within_the_limit_never_cut_mid_line(apps, lines):
    document = big_plan(apps, lines)
    assert len(plan_format.markdown(document, limit=10**9)) > plan_format.COMMENT_LIMIT
    comment = plan_format.markdown(document)
    tokens = check_comment(document, comment)
    assert "the full plan is in the job log" in comment
    shown = sum(t.type == "fence" for t in tokens)
    tables = sum(t.type == "table_open" for t in tokens)
    lines_only = len(re.findall(r"^- <code>~ big/app\d+</code>", comment, re.MULTILINE))
    left_out = re.search(r"^(\d+) more apps? left out", comment, re.MULTILINE)
    assert shown + tables + lines_only + (int(left_out[1]) if left_out else 0) == apps
    if apps == 3:
        assert shown == 0 and tables == 3  # each diff alone is over the limit: a table of its files each
    if apps == 40:
        assert shown > 0 and tables > 0  # the largest diffs are summarised, the others shown whole
    if apps == 2000:
        assert left_out and shown == 0


def test_nothing_from_a_spec_is_read_as_markup():
    hostile = "</summary></details><script>alert(1)</script>*bold* [x](http://evil) `code` | cell ~~gone~~"
    diff = ("--- a/w/x.yaml\n+++ b/w/x.yaml\n@@ -1 +1,104 @@\n-a: 1\n+a: |\n+ ```\n+   ````` </details>\n"
            "+ <img src=x onerror=alert(1)>\n" + "+  filler line of the block\n" * 100)
    document = {"prune": False, "changes": 1, "clusters": [{
        "cluster": "demo", "commit": None, "counts": {"added": 0, "changed": 1, "removed": 0, "unchanged": 0},
        "apps": [{"app": "w/x", "action": "changed", "spec": hostile, "notes": [hostile, "two\n\nlines"],
                  "files": [{"path": hostile, "change": "modified", "added": 103, "removed": 1}], "diff": diff}]}]}
    for limit, form in ((plan_format.COMMENT_LIMIT, {"fence"}), (2500, {"table_open"}), (700, set())):
        comment = plan_format.markdown(document, limit=limit)
        tokens = check_comment(document, comment)
        assert {"fence", "table_open"} & {t.type for t in tokens} == form  # the diff whole, its table, a line
        assert "<code>~ w/x</code> changed" in comment
        inline = [child for t in tokens if t.type == "inline" for child in t.children or []]
        assert not [c for c in inline if c.type in ("html_inline", "link_open", "em_open", "strong_open",
                                                     "code_inline", "s_open") and "code" not in c.content]
        html = "".join(t.content for t in [*tokens, *inline] if t.type in ("html_block", "html_inline"))
        assert "<script" not in html and "<img" not in html and "</summary></details>" not in html
        cells = [t for t in tokens if t.type == "td_open"]
        assert len(cells) in (0, 4)  # the table's one row keeps its four cells: no "|" from a spec split them
        if limit == plan_format.COMMENT_LIMIT:
            assert [t.content for t in tokens if t.type == "fence"] == [diff]
            texts = "".join(c.content for c in inline if c.type == "text")
            assert "*bold* [x](http://evil) `code` | cell ~~gone~~" in texts and "two lines" in texts


# --- end to end: the shipyard command, against a control plane and offline -----------------------


def shipyard(*args: str, url: str = "", token: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_") or k == "SHIPYARD_CRD_SCHEMAS"}
    env.update(SHIPYARD_URL=url, SHIPYARD_TOKEN=token, XDG_CONFIG_HOME=str(ROOT / "nowhere"), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_the_control_plane_and_a_clone_of_its_repository_give_the_same_plan(plane_app, served, tmp_path):  # noqa: F811
    admin = make_user(plane_app, "admin", "tenant-admin")
    read_token = add_cluster(admin)["read_token"]
    for workspace in ("storefront", "data"):
        add_workspace(admin, "demo", workspace)
    for text in (spec("web"), spec("api"), spec("old"), spec("keep", "data")):
        assert deploy_yaml(admin, text).status_code == 200
    specs = tmp_path / "specs"
    specs.mkdir()
    for name, text in {"web": spec("web", image="ghcr.io/acme/web:2.0"), "api": spec("api"),
                       "cart": spec("cart", extra=SPOT)}.items():
        (specs / f"{name}.yaml").write_text(text)
    clone = tmp_path / "clone"
    address = served.replace("http://", f"http://x:{read_token}@")
    subprocess.run(["git", "clone", "-q", f"{address}/git/default/demo.git", str(clone)], check=True, timeout=60)

    def both(*args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        return (shipyard("plan", str(specs), *args, url=served, token=admin.token),
                shipyard("plan", str(specs), *args, "--offline", "--cluster", str(DEMO), "--repo", str(clone)))

    server, offline = both("--prune", "--output", "json")
    assert server.returncode == offline.returncode == 0, (server.stderr, offline.stderr)
    document = json.loads(server.stdout)
    assert document == json.loads(offline.stdout)
    assert {a["app"]: a["action"] for a in document["clusters"][0]["apps"]} == {
        "storefront/api": "unchanged", "storefront/cart": "added", "storefront/old": "removed",
        "storefront/web": "changed"}
    assert document["clusters"][0]["commit"] == subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

    server, offline = both("--prune", "--format", "markdown", "--detailed-exitcode")
    assert server.returncode == offline.returncode == 2, (server.stderr, offline.stderr)
    assert server.stdout == offline.stdout
    assert server.stdout.startswith(plan_format.TITLE) and "<code>- storefront/old</code> removed" in server.stdout

    server, offline = both()
    assert server.returncode == offline.returncode == 0
    assert server.stdout == offline.stdout
    assert server.stdout.startswith("cluster demo at ")
    assert ": 1 to add, 1 to change, 0 to remove, 1 unchanged\n" in server.stdout
    assert "  + storefront/cart  (" in server.stdout and "note: kind clusters have no spot capacity" in server.stdout

    (specs / "cart.yaml").unlink()
    (specs / "web.yaml").write_text(spec("web"))
    server, offline = both("--detailed-exitcode")
    assert server.returncode == offline.returncode == 0, (server.stderr, offline.stderr)  # nothing would change
    assert "cluster demo at " in server.stdout and ": no changes, 2 unchanged" in server.stdout

    (specs / "web.yaml").write_text(spec("web").replace("ports:", "portz:"))
    server, offline = both("--detailed-exitcode")
    assert server.returncode == offline.returncode == 1
    assert server.stdout == offline.stdout == ""
    assert f"{specs / 'web.yaml'}:5:1:" in server.stderr and 'unknown field "portz"' in server.stderr
    assert server.stderr == offline.stderr

    # nothing was written: no version, no commit
    assert admin.get("/api/v1/apps/demo/storefront/web/versions").get_json()["versions"][0]["number"] == 1
    assert subprocess.run(["git", "-C", str(clone), "fetch", "-q", "--dry-run", "origin"], capture_output=True,
                          text=True, timeout=60).stderr == ""


@pytest.mark.slow
def test_a_token_that_may_not_read_the_workspace_plans_nothing(plane_app, served, tmp_path):  # noqa: F811
    admin = make_user(plane_app, "admin", "tenant-admin")
    add_cluster(admin)
    for workspace in ("storefront", "data"):
        add_workspace(admin, "demo", workspace)
    assert deploy_yaml(admin, spec("web")).status_code == 200
    (tmp_path / "web.yaml").write_text(spec("web", image="ghcr.io/acme/web:2.0"))
    outsider = make_user(plane_app, "outsider", "workspace-viewer", cluster="demo", workspace="data")
    refused = shipyard("plan", str(tmp_path / "web.yaml"), url=served, token=outsider.token)
    assert refused.returncode == 4, refused.stderr
    assert 'no workspace "storefront"' in refused.stderr and refused.stdout == ""
    reader = make_user(plane_app, "reader", "workspace-viewer", cluster="demo", workspace="storefront")
    planned = shipyard("plan", str(tmp_path / "web.yaml"), "--detailed-exitcode", url=served, token=reader.token)
    assert planned.returncode == 2, planned.stderr  # reading is enough to plan
    anonymous = shipyard("plan", str(tmp_path / "web.yaml"), url=served, token="shy_not-a-token")
    assert anonymous.returncode == 6


def test_plan_options_go_together_or_say_why():
    for args, message in ((["--cluster", str(DEMO)], "--cluster and --repo go with --offline"),
                          (["--offline"], "--offline needs a --cluster profile")):
        result = shipyard("plan", str(ROOT / "fixtures" / "specs" / "web.yaml"), *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    two = shipyard("plan", "x.yaml", "--offline", "--cluster", str(DEMO), "--cluster",
                   str(ROOT / "fixtures" / "clusters" / "eks.yaml"), "--repo", "somewhere")
    assert two.returncode == 2 and "write CLUSTER=PATH" in two.stderr


def test_invalid_specs_make_a_comment_of_their_problems_within_the_limit():
    lines = [f"deploy/app-{n}.yaml:{n}:1: unknown field \"portz\" ```; did you mean \"ports\"? (at /portz)"
             for n in range(1, 3000)]
    comment = plan_format.problems(lines)
    assert len(comment) <= plan_format.COMMENT_LIMIT
    assert comment.startswith(plan_format.TITLE) and "2999 problems found" in comment
    tokens = MarkdownIt().parse(comment)
    (block,) = [t for t in tokens if t.type == "fence"]  # the backticks of a message never close the block
    shown = block.content.splitlines()
    assert shown == lines[:len(shown)] and len(shown) > 100
    assert comment.endswith(f"{len(lines) - len(shown)} more in the job log.\n")
    assert plan_format.problems(lines[:2]).count("deploy/app-") == 2 and "more in the job log" not in \
        plan_format.problems(lines[:2])
