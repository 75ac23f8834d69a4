"""Synthetic deploy specs and cluster repositories for the benchmarks.

Specs are generated as YAML text and go through the real loader
(``renderer.spec.load_specs``) and renderer (``renderer.render.render``) on
the demo cluster profile (``fixtures/clusters/demo.yaml``), so every benchmark
measures the product's own code paths.

Large repositories are built without rendering every app: a few distinct
shapes are rendered once, with placeholder app and workspace names, and their
bytes are copied under each app's real names (a byte substitution, so every
app still gets its own blobs, as a real repository would). The copies are
written with ``ClusterRepo.commit`` and ``gitops.layout`` paths in large
batches, which builds a 10,000-app repository in about 20 seconds.

Renders validate custom resources against ``CRD_SCHEMAS``: the directory in
``SHIPYARD_CRD_SCHEMAS``, or else the shared checkout beside this repository,
so CRD kinds cost in a benchmark what they cost in production. The variable is
only read, never set: the tests import this module, and whether they check CRD
kinds must not depend on that (tests/conftest.py decides).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable as `python benchmarks/x.py` without an install
    sys.path.insert(0, str(ROOT))

from contract.repository import app_dir, application_file
from gitops import layout, tokens
from gitops.repo import ClusterRepo, Directory
from renderer.kube import KubeSchemas
from renderer.profiles import ClusterProfile, load_profile
from renderer.render import Rendering, render
from renderer.spec import Spec, load_specs

DEMO_PROFILE = ROOT / "fixtures" / "clusters" / "demo.yaml"
SHARED_CRD_SCHEMAS = ROOT.parent / "shared" / "crd-schemas"
CRD_SCHEMAS = KubeSchemas.from_setting(os.environ.get("SHIPYARD_CRD_SCHEMAS") or SHARED_CRD_SCHEMAS)
APPS_PER_WORKSPACE = 50

# Four service shapes close to fixtures/specs/web.yaml, all valid on the demo
# cluster: autoscaled and exposed with secrets, canary with fixed replicas,
# a worker without ports, a TCP service. ``{tag}`` is the image tag: change
# it and the spec (and every object carrying its digest) changes.
SHAPES = {
    "web": """\
type: service
name: {name}
workspace_fqn: demo:{workspace}
image:
  type: image
  image_uri: ghcr.io/acme/{name}:{tag}
  command: gunicorn app:server --bind 0.0.0.0:8000
ports:
  - port: 8000
    expose: true
    app_protocol: http
    path: /
resources:
  cpu_request: 0.5
  cpu_limit: 1
  memory_request: 512
  memory_limit: 1024
env:
  LOG_LEVEL: info
  FEATURE_FLAGS: "no"
  DATABASE_PASSWORD: secret://{workspace}/db#password
replicas:
  min_replicas: 2
  max_replicas: 10
  metrics:
    - type: cpu_utilization
      value: 70
    - type: rps
      value: 50
liveness_probe:
  config: {{type: http, path: /healthz, port: 8000}}
  period_seconds: 10
readiness_probe:
  config: {{type: http, path: /ready, port: 8000}}
metrics:
  port: 9090
labels:
  team: {workspace}
""",
    "api": """\
type: service
name: {name}
workspace_fqn: demo:{workspace}
image:
  type: image
  image_uri: ghcr.io/acme/{name}:{tag}
ports:
  - port: 8080
    app_protocol: http
resources:
  cpu_request: 0.25
  memory_request: 256
  memory_limit: 512
env:
  LOG_LEVEL: warn
  API_TOKEN: secret://{workspace}/api#token
replicas: 3
rollout_strategy:
  type: canary
  steps:
    - weight_percentage: 20
      pause_duration: 60
    - weight_percentage: 50
readiness_probe:
  config: {{type: http, path: /ready, port: 8080}}
labels:
  team: {workspace}
""",
    "worker": """\
type: service
name: {name}
workspace_fqn: demo:{workspace}
image:
  type: image
  image_uri: ghcr.io/acme/{name}:{tag}
  command: [python, -m, worker]
resources:
  cpu_request: 1
  memory_request: 1024
env:
  QUEUE: jobs
  CONCURRENCY: 4
replicas: 1
""",
    "tcp": """\
type: service
name: {name}
workspace_fqn: demo:{workspace}
image:
  type: image
  image_uri: ghcr.io/acme/{name}:{tag}
ports:
  - port: 6379
    protocol: TCP
    app_protocol: tcp
replicas: 2
liveness_probe:
  config: {{type: tcp, port: 6379}}
""",
}
SHAPE_NAMES = tuple(SHAPES)

# Placeholders for the rendered templates: distinctive, valid names that
# appear nowhere else in the rendered bytes.
_APP_TOKEN = "zzappzz"
_WORKSPACE_TOKEN = "zzwszz"


def profile() -> ClusterProfile:
    return load_profile(DEMO_PROFILE)


def workspace_name(index: int, apps_per_workspace: int | None = APPS_PER_WORKSPACE) -> str:
    """Workspace of app ``index``; all apps share one when ``apps_per_workspace`` is None."""
    if apps_per_workspace is None:
        return "ws-all"
    return f"ws-{index // apps_per_workspace:04d}"


def app_name(index: int) -> str:
    return f"svc-{index:05d}"


def shape_of(index: int) -> str:
    return SHAPE_NAMES[index % len(SHAPE_NAMES)]


def spec_text(name: str, workspace: str, tag: str = "1.0.0", shape: str = "web") -> str:
    return SHAPES[shape].format(name=name, workspace=workspace, tag=tag)


def load_spec(name: str, workspace: str, tag: str = "1.0.0", shape: str = "web") -> Spec:
    (spec,) = load_specs(spec_text(name, workspace, tag, shape), f"<{workspace}/{name}>")
    return spec


# --- repositories ------------------------------------------------------------------


@dataclass
class BuiltRepo:
    repo: ClusterRepo
    apps: int
    workspaces: int
    seconds: float


class _Stamp:
    """One rendered shape whose bytes are stamped with other app/workspace names."""

    def __init__(self, rendering: Rendering):
        self.files = dict(rendering.files)
        self.application = rendering.application_bytes

    def changes(self, workspace: str, app: str) -> dict[str, object]:
        """The same paths and values as ``layout.rendering_changes`` would give."""
        ws, name = workspace.encode(), app.encode()

        def stamp(data: bytes) -> bytes:
            return data.replace(_APP_TOKEN.encode(), name).replace(_WORKSPACE_TOKEN.encode(), ws)

        files = {filename.replace(_APP_TOKEN, app): stamp(data) for filename, data in self.files.items()}
        return {
            app_dir(workspace, app): Directory(files),
            application_file(workspace, app): stamp(self.application),
        }


def build_repo(path: Path, apps: int, profile: ClusterProfile, *, apps_per_workspace: int | None = APPS_PER_WORKSPACE,
               batch: int = 2500, repack: bool = True) -> BuiltRepo:
    """A cluster repository holding ``apps`` services, written in batches of ``batch`` apps per commit.

    ``repack`` packs the objects afterwards (``git repack -ad``), the state a
    long-lived repository is in after ``git gc``; without it every object is a
    loose file.
    """
    started = time.perf_counter()
    stamps = {shape: _Stamp(render(load_spec(_APP_TOKEN, _WORKSPACE_TOKEN, shape=shape), profile, CRD_SCHEMAS))
              for shape in SHAPE_NAMES}
    repo = ClusterRepo(path, branch=profile.branch)
    workspaces: list[str] = []
    for start in range(0, apps, batch):
        changes: dict[str, object] = {}
        for index in range(start, min(apps, start + batch)):
            workspace = workspace_name(index, apps_per_workspace)
            if not workspaces or workspaces[-1] != workspace:
                workspaces.append(workspace)
                changes.update(layout.workspace_changes(profile, workspace))
            changes.update(stamps[shape_of(index)].changes(workspace, app_name(index)))
        changes.update(layout.bootstrap_changes(profile, sorted(workspaces)))
        repo.commit(lambda base, changes=changes: changes, f"Seed apps {start}..{min(apps, start + batch) - 1}")
    if repack:
        subprocess.run(["git", "-C", str(path), "repack", "-adq"], check=True)
    return BuiltRepo(repo, apps, len(workspaces), time.perf_counter() - started)


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, env=GIT_ENV,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
    # No system or user configuration (hooks, signing, fsmonitor): stock git.
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}


def bench_plane(database_url: str, data_dir: Path):
    """A control plane app (migrated) with a tenant-admin user "bench": (app, its API token, tenant id).

    For seeding through the API in-process (``app.test_client()``) before a server starts;
    the caller closes ``app.extensions["shipyard"]``.
    """
    from gitops import accounts
    from gitops.models import RoleBinding, Tenant
    from gitops.policy import Scope
    from webapp import create_app

    app = create_app({"DATA_DIR": str(data_dir), "DATABASE_URL": database_url, "AUTO_MIGRATE": True,
                      "RECONCILE_INTERVAL": 0, "LOG_FORMAT": "text"})
    with app.extensions["shipyard"].sessions.begin() as session:
        tenant = session.query(Tenant).filter_by(name=app.config["TENANT"]).one()
        user = accounts.create_local_user(session, tenant, "bench", secrets.token_urlsafe(24))
        session.add(RoleBinding(tenant_id=tenant.id, role="tenant-admin", subject_kind="user", subject="bench"))
        token = tokens.issue_token(session, tenant.id, user.id, "bench", "tenant-admin", Scope(tenant.id), 1).secret
        return app, token, tenant.id

