"""Property-based API testing with schemathesis against the app's own OpenAPI document.

The document served at /api/v1/openapi.json drives generation; every
operation gets a bounded number of generated requests, authenticated as a
tenant admin, against seeded data (cluster demo, workspace storefront, app
web with versions). No request may end in a server error: a 5xx is a bug.

Each operation is exercised three ways: with generated path parameters
(mostly unknown names), with path parameters naming the seeded objects and
schema-conforming bodies, and with those objects and bodies that break the
schema. Generation is derandomized so a failure reproduces; nothing is
shrunk (the server keeps state between requests, so a shrunk case would not
replay the same history) and each failure names its curl command instead.

Operations run reads first and removals last, so the seeded objects stay
around for as long as possible; the admin's own token and binding are never
generated as a target, or every later request would be a 401.

The stateful phase chains calls along the document's links (a cluster listed
or created leads to its workspaces, an app listed to its versions, ...), on
SQLite and on PostgreSQL, which refuses what SQLite keeps (over-long text).
Each scenario runs on its own copy of one seeded control plane (database and
repositories): Hypothesis requires the same choices to meet the same answers,
and a scenario meeting an earlier one's leftovers (a cluster it already
created answers 409) would make generation inconsistent. Every response must be no server error, a status and content
type the document declares for the operation, a body its schema allows, and
an object just created must be there to read. Operations that could take the
test's own access away (revoking tokens, deleting role bindings, changing
users) are left out. Failures are collected rather than raised: the server
keeps its state, so Hypothesis could not replay a scenario to report it.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.internal.floats import float_to_int
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_schema_conformance,
    status_code_conformance,
)
from sortedcontainers import SortedSet
from sqlalchemy import select
from sqlalchemy.engine import make_url

from gitops.models import ApiToken, RoleBinding
from tests.plane import (
    DATABASES,
    add_cluster,
    add_workspace,
    app_config,
    deploy_yaml,
    make_user,
    service_spec,
)
from webapp import create_app

API = "/api/v1"
MAX_EXAMPLES = 25
SETTINGS = settings(
    max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
)

STATELESS_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                    response_schema_conformance]


@pytest.fixture
def database_url(request, tmp_path):
    """SQLite, unless a test asks for its databases: the stateless runs look for server errors in
    the request handling, not in the database."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'shipyard.db'}"


@pytest.fixture(autouse=True)
def same_generation_everywhere(monkeypatch):
    """Hypothesis also draws literals it finds in the project's imported modules (tests excluded), so
    what it generated here depended on which other test modules this process had imported, and in
    what order: a failure would not reproduce alone. Without them the generation is the same alone,
    in the whole suite and in any order."""
    from hypothesis.internal.cache import LRUCache
    from hypothesis.internal.conjecture import providers

    empty = type(providers.GLOBAL_CONSTANTS)(integers=SortedSet(), floats=SortedSet(key=float_to_int),
                                             bytes=SortedSet(), strings=SortedSet())
    monkeypatch.setattr(providers, "_get_local_constants", lambda: empty)
    monkeypatch.setattr(providers, "CONSTANTS_CACHE", LRUCache(1024))


@pytest.fixture
def schema(plane_app):
    return schemathesis.openapi.from_wsgi(f"{API}/openapi.json", plane_app)


@pytest.fixture
def seeded(plane_app, admin) -> dict:
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    for image in ("ghcr.io/acme/web:1", "ghcr.io/acme/web:2"):
        assert deploy_yaml(admin, service_spec("web", image=image)).status_code == 200
    binding = admin.post(f"{API}/role-bindings", json={"role": "workspace-viewer", "subject": "guest",
                                                       "cluster": "demo", "workspace": "storefront"})
    make_user(plane_app, "victim", "workspace-viewer", cluster="demo", workspace="storefront")
    with plane_app.extensions["shipyard"].sessions() as session:
        victim_token = session.scalar(select(ApiToken.id).join(ApiToken.user).where(ApiToken.user.has(username="victim")))
        admin_token = session.scalar(select(ApiToken.id).join(ApiToken.user).where(ApiToken.user.has(username="admin")))
        admin_binding = session.scalar(select(RoleBinding.id).where(RoleBinding.subject == "admin"))
    return {
        "token": admin.token,
        "path": {"cluster": "demo", "workspace": "storefront", "app": "web", "number": 1,
                 "binding_id": binding.get_json()["id"], "token_id": victim_token, "kind": "read"},
        "protected": {"token_id": admin_token, "binding_id": admin_binding},
    }


def run_order(operation) -> tuple:
    """Reads, then changes, then removals: apps, then workspaces, then clusters."""
    method = operation.method.upper()
    if method != "DELETE":
        return (0 if method == "GET" else 1, operation.path)
    return (2 + ("/apps/" not in operation.path) + operation.path.endswith("/{cluster}"), operation.path)


def test_openapi_document_describes_every_api_route(plane_app, schema):
    operations = list(schema.get_all_operations())
    broken = [str(result.err()) for result in operations if not isinstance(result, Ok)]
    assert broken == [], "operations schemathesis cannot use:\n" + "\n".join(broken)
    described = {(op.method.upper(), op.path) for op in (result.ok() for result in operations)}
    routes = set()
    for rule in plane_app.url_map.iter_rules():
        if rule.rule.startswith(f"{API}/") and rule.endpoint != "api.openapi":
            path = rule.rule
            for converter in ("int:", "string:"):
                path = path.replace(f"<{converter}", "<")
            path = path.replace("<", "{").replace(">", "}")
            routes |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert described == routes
    document = plane_app.test_client().get(f"{API}/openapi.json").get_json()
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_no_operation_ends_in_a_server_error(plane_app, schema, seeded):
    headers = {"Authorization": f"Bearer {seeded['token']}"}
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=run_order)
    assert len(operations) >= 25
    failures: dict[str, str] = {}

    def keeps_access(case) -> bool:
        return all(case.path_parameters.get(name) != value for name, value in seeded["protected"].items())

    for operation in operations:
        fixed = {name: value for name, value in seeded["path"].items() if f"{{{name}}}" in operation.path}
        strategies = {
            "generated paths": operation.as_strategy(),
            "seeded objects": operation.as_strategy(path_parameters=fixed),
            "seeded objects, invalid input": operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed),
        }
        for label, strategy in strategies.items():
            @SETTINGS
            @given(case=strategy.filter(keeps_access))
            def exercise(case):
                case.validate_response(case.call(headers=headers), checks=STATELESS_CHECKS, headers=headers)

            try:
                exercise()
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
                failures[f"{operation.label} ({label})"] = f"{exc}"[:3000]

    assert failures == {}, "\n\n".join(f"{name}:\n{report}" for name, report in failures.items())
    # The seeded admin kept its access to the end, so the later operations were really exercised.
    assert plane_app.test_client().get(f"{API}/me", headers=headers).status_code == 200


# --- the stateful phase ---------------------------------------------------------------------------

# About 450 calls: under 10 seconds a database here.
STATEFUL_SETTINGS = settings(
    max_examples=40, stateful_step_count=10, derandomize=True, deadline=None, database=None,
    phases=[Phase.generate], suppress_health_check=list(HealthCheck),
)
# What holds for this API. Not use_after_free: a deleted app's history stays readable (200, "deleted": true).
STATEFUL_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_schema_conformance, ensure_resource_availability]
# Only the document's links: a chain the document does not promise is not the server's to honour.
DECLARED_LINKS_ONLY = {"phases": {"stateful": {"inference": {"algorithms": []}}}}
_ACCESS = re.compile(rf"^{API}/(tokens|role-bindings|users)(/|$)")


def takes_access_away(context) -> bool:
    """Revoking tokens, deleting role bindings, changing users: anything but reading or creating them."""
    operation = context.operation
    if not _ACCESS.match(operation.path) or operation.method.upper() == "GET":
        return False
    return not (operation.method.upper() == "POST" and operation.path.rstrip("/").count("/") == 3)


def seed(admin) -> None:
    """Cluster demo, workspace storefront and app web, as the stateless runs have them."""
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    assert deploy_yaml(admin, service_spec("web")).status_code == 200


class SeededPlanes:
    """A WSGI app forwarding to the current scenario's control plane; ``fresh()`` starts a new one
    on a copy of the seeded database and data directory, seeded once (a PostgreSQL database is
    copied by ``CREATE DATABASE ... TEMPLATE``)."""

    def __init__(self, tmp_path: Path, database_url: str, postgres_server=None):
        self.tmp_path, self.postgres_server = tmp_path, postgres_server
        self.template = make_url(database_url).database
        self.current: Flask | None = None
        self.scenario: tuple[Path, str | None] | None = None
        self.started = 0
        seeded = create_app(app_config(tmp_path / "seed", database_url))
        self.admin = make_user(seeded, "admin", "tenant-admin")
        seed(self.admin)
        seeded.extensions["shipyard"].close()

    def fresh(self) -> Flask:
        self.close()
        self.started += 1
        copy = self.tmp_path / f"scenario-{self.started}"
        shutil.copytree(self.tmp_path / "seed", copy / "data")
        if self.postgres_server is None:
            database, url = None, f"sqlite:///{copy / 'shipyard.db'}"
            shutil.copyfile(self.template, copy / "shipyard.db")
        else:
            database = f"scenario_{uuid.uuid4().hex[:16]}"
            url = self.postgres_server.create_database(database, template=self.template)
        self.scenario = (copy, database)
        self.current = create_app(app_config(copy / "data", url))
        return self.current

    def close(self) -> None:
        """Ends the current scenario's plane and throws its copy away."""
        if self.current is not None:
            self.current.extensions["shipyard"].close()
            self.current = None
        if self.scenario is not None:
            copy, database = self.scenario
            shutil.rmtree(copy, ignore_errors=True)
            if database is not None:
                self.postgres_server.drop_database(database)
            self.scenario = None

    def __call__(self, environ, start_response):
        return self.current(environ, start_response)


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
def test_stateful_scenarios_conform_to_the_document(request, database_url, tmp_path):
    postgres = request.getfixturevalue("postgres_server") if database_url.startswith("postgresql") else None
    planes = SeededPlanes(tmp_path, database_url, postgres)
    planes.fresh()
    config = SchemathesisConfig.from_dict(DECLARED_LINKS_ONLY)
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", planes, config=config)
    schema = schema.exclude(func=takes_access_away)
    headers = {"Authorization": f"Bearer {planes.admin.token}"}
    failures: list[str] = []
    answered: set[tuple[str, int]] = set()

    class Scenario(schema.as_state_machine()):
        def setup(self):
            planes.fresh()

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            answered.add((case.operation.label, response.status_code))
            try:
                case.validate_response(response, checks=STATEFUL_CHECKS, headers=headers,
                                       transport_kwargs=kwargs or None, recorder=self.recorder)
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                failures.append(f"{case.operation.label}: {exc}"[:3000])

    try:
        Scenario.run(settings=STATEFUL_SETTINGS)
    finally:
        planes.close()

    assert failures == [], f"{len(failures)} failure(s):\n\n" + "\n\n".join(failures[:20])
    assert planes.started >= STATEFUL_SETTINGS.max_examples // 2, planes.started
    # the links were followed: operations on the seeded objects answered with success
    succeeded = {label for label, status in answered if status < 300}
    assert len(succeeded) >= 12, sorted(succeeded)
