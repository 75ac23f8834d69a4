"""HTTP hygiene over every route of Flask's URL map, so a route added later is covered by itself.

(a) Text no database can hold -- a NUL, percent-encoded bytes that are not
UTF-8 -- in a path parameter, the query string, a form field or a header is
a 400 before anything looks it up (webapp.request_text), in the style of the
route's family (JSON for the API, the agent and git; plain text for pages),
and never a 500 or a logged error. PostgreSQL text cannot hold NUL, so on
PostgreSQL these reached the driver and failed there.

(b) A method a route does not take is a 405 whose ``Allow`` names exactly
the methods the route takes (RFC 9110 15.5.6).

(c) The limits the OpenAPI document declares for query parameters are the
ones the server enforces: each bound is accepted and one past it refused.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

import pytest
from werkzeug.exceptions import HTTPException

from tests.plane import add_cluster, add_workspace, deploy_yaml, service_spec

# A value for each path parameter that names a seeded object (or, for tenant/owner, the tenant).
SEEDED = {"cluster": "demo", "workspace": "storefront", "app": "web", "tenant": "default", "owner": "default",
          "repo": "demo", "kind": "read"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def url_for_rule(rule, replaced: str | None = None, value: str = "") -> str:
    """The rule's path with seeded values, and ``value`` (already percent-encoded) in parameter ``replaced``."""
    def fill(match: re.Match) -> str:
        converter, name = match.group(1), match.group(2)
        if name == replaced:
            return value
        return "1" if converter in ("int", "float") else SEEDED.get(name, "x")

    return _PARAMETER.sub(fill, rule.rule)


def family(app, path: str, method: str) -> str:
    """"pages" when the request reaches an HTML page's route, else "api" (API, agent, git, unrouted)."""
    try:
        endpoint, _ = app.url_map.bind("localhost").match(unquote(path.partition("?")[0]), method)
    except HTTPException:
        return "api"
    return "pages" if endpoint.startswith("pages.") else "api"


@pytest.fixture
def seeded(plane_app, admin):
    add_cluster(admin)
    add_workspace(admin, "demo", "storefront")
    assert deploy_yaml(admin, service_spec("web")).status_code == 200
    return admin


def hostile_requests(rule, token: str):
    """(label, method, path, keyword arguments of client.open) for every kind of unstorable text."""
    headers = {"Authorization": f"Bearer {token}"}
    for method in sorted(rule.methods):
        plain = url_for_rule(rule)
        for name in rule.arguments:
            for label, value in (("NUL", "a%00"), ("not UTF-8", "a%FF"), ("an encoded surrogate", "%ED%A0%80")):
                if label != "NUL" and _is_numeric(rule, name):
                    continue  # an int converter routes only digits: a NUL alone makes the case
                yield f"{label} in path parameter {name}", method, url_for_rule(rule, name, value), {"headers": headers}
        yield "NUL in a query value", method, f"{plain}?cluster=a%00", {"headers": headers}
        yield "NUL in a query key", method, f"{plain}?a%00=1", {"headers": headers}
        yield "not UTF-8 in a query value", method, f"{plain}?workspace=%C3", {"headers": headers}
        yield "NUL in the Authorization header", method, plain, {"headers": {"Authorization": f"Bearer {token}\x00"}}
        if method in ("POST", "PUT", "PATCH"):
            yield "NUL in a urlencoded form field", method, plain, {
                "headers": headers, "data": "username=admin%00&password=x",
                "content_type": "application/x-www-form-urlencoded"}
            yield "NUL in a multipart form field", method, plain, {
                "headers": headers, "data": {"username": "admin\x00", "password": "x"},
                "content_type": "multipart/form-data"}


def _is_numeric(rule, name: str) -> bool:
    return any(m.group(2) == name and m.group(1) in ("int", "float") for m in _PARAMETER.finditer(rule.rule))


def test_unstorable_text_is_refused_on_every_route(plane_app, seeded, caplog):
    client = plane_app.test_client()
    # A real CSRF token in the session and the form: a form post is refused for its text, not for CSRF.
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    caplog.set_level(logging.INFO)
    rules = list(plane_app.url_map.iter_rules())
    assert {rule.endpoint.split(".")[0] for rule in rules} >= {"api", "pages", "githttp", "agent", "observability"}

    wrong = []
    sent = 0
    for rule in rules:
        for label, method, path, kwargs in hostile_requests(rule, seeded.token):
            kwargs = {**kwargs, "headers": {**kwargs["headers"], "X-CSRFToken": csrf}}
            if isinstance(kwargs.get("data"), dict):
                kwargs["data"] = {**kwargs["data"], "csrf_token": csrf}
            elif isinstance(kwargs.get("data"), str):
                kwargs["data"] += f"&csrf_token={csrf}"
            response = client.open(path, method=method, **kwargs)
            sent += 1
            problem = _problem(plane_app, method, path, response)
            if problem:
                wrong.append(f"{method} {path} ({label}, {rule.endpoint}): {problem}: "
                             f"{response.get_data(as_text=True)[:200]}")

    assert sent > 10 * len(rules)
    assert wrong == [], f"{len(wrong)} of {sent} requests:\n" + "\n".join(wrong)
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], "logged as errors:\n" + "\n".join(errors)


def _problem(app, method: str, path: str, response) -> str | None:
    if response.status_code != 400:
        return f"status {response.status_code}, not 400"
    if method == "HEAD":
        return None
    if family(app, path, method) == "pages":
        return None if response.mimetype == "text/plain" else f"a page answered {response.mimetype}, not text/plain"
    body = response.get_json(silent=True) or {}
    if body.get("error", {}).get("code") != "invalid_request":
        return "not a JSON invalid_request error"
    return None


def test_login_with_a_nul_in_the_username_is_a_plain_400(plane_app, seeded):
    client = plane_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": "admin\x00", "password": "correct horse battery",
                                           "csrf_token": csrf})
    assert response.status_code == 400 and response.mimetype == "text/plain"
    assert "NUL" in response.get_data(as_text=True)
    # the same form without the NUL still logs in: the check read the body, the view read it again
    response = client.post("/login", data={"username": "admin", "password": "correct horse battery",
                                           "csrf_token": csrf})
    assert response.status_code == 302


def test_ordinary_text_passes(plane_app, seeded):
    """Percent-encoded UTF-8, '+' and a literal '%' are text like any other, not refused."""
    api = seeded
    assert api.get("/api/v1/apps", query_string={"cluster": "démo", "after": "a+b%c/d/e"}).status_code == 200
    assert api.get("/api/v1/clusters/d%C3%A9mo").status_code == 404
    assert api.get("/api/v1/apps?workspace=%E2%82%AC+x").status_code == 200


def test_a_method_a_route_does_not_take_is_405_with_allow(plane_app):
    methods_by_path: dict[str, set[str]] = {}
    samples: dict[str, str] = {}
    for rule in plane_app.url_map.iter_rules():
        methods_by_path.setdefault(rule.rule, set()).update(rule.methods)
        samples[rule.rule] = url_for_rule(rule)
    client = plane_app.test_client()
    wrong, sent = [], 0
    for rule, allowed in methods_by_path.items():
        for method in sorted(set(METHODS) - allowed):
            response = client.open(samples[rule], method=method)
            sent += 1
            declared = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
            if response.status_code != 405 or declared != allowed:
                wrong.append(f"{method} {samples[rule]}: {response.status_code}, Allow: {sorted(declared)}, "
                             f"the route takes {sorted(allowed)}")
    assert sent >= 20
    assert wrong == [], "\n".join(wrong)


def _seeded_path(path: str) -> str:
    """An OpenAPI path naming the seeded objects (version 1 for numbers and ids)."""
    return re.sub(r"\{(\w+)\}", lambda match: SEEDED.get(match.group(1), "1"), path)


def _probes(schema: dict) -> list[tuple[str, bool]]:
    """(value, whether the server must accept it) at and just past each declared limit."""
    if schema.get("type") == "integer":
        low, high = schema["minimum"], schema["maximum"]
        return [(str(low - 1), False), (str(low), True), (str(high), True), (str(high + 1), False),
                ("1.5", False), ("-1", False), ("\u00b2", False), ("0" * 30 + str(low), True)]
    if "enum" in schema:
        return [(schema["enum"][0], True), ("not-" + schema["enum"][0], False)]
    probes = []
    if "maxLength" in schema:
        probes += [("x" * schema["maxLength"], True), ("x" * (schema["maxLength"] + 1), False)]
    if "pattern" in schema:
        probes += [("a/b/c", True), ("a/b", False)]  # the one pattern a query parameter declares: after
    return probes


def test_declared_query_limits_are_the_enforced_ones(plane_app, seeded):
    document = seeded.get("/api/v1/openapi.json").get_json()
    spec = service_spec("web")
    wrong, probed = [], 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            yaml_body = "application/yaml" in operation.get("requestBody", {}).get("content", {})
            if not query or (method != "get" and not yaml_body):
                continue
            # with a YAML body, a dry run: what is probed is the parameter, nothing is deployed
            body = {"data": spec, "content_type": "application/yaml"} if yaml_body else {}
            base = {"dry_run": "true"} if yaml_body else {}
            required = {p["name"]: str(p["schema"]["minimum"]) for p in query if p.get("required")}
            for parameter in query:
                others = {**base, **{k: v for k, v in required.items() if k != parameter["name"]}}
                cases = _probes(parameter["schema"])
                if parameter.get("required"):
                    cases.append((None, False))
                for value, accepted in cases:
                    args = {**others, **({parameter["name"]: value} if value is not None else {})}
                    response = seeded.request(method.upper(), _seeded_path(path), query_string=args, **body)
                    probed += 1
                    if (response.status_code != 400) != accepted or response.status_code >= 500:
                        wrong.append(f"{method.upper()} {path}?{parameter['name']}={value!r:.40}: "
                                     f"{response.status_code}, expected {'acceptance' if accepted else '400'}: "
                                     f"{response.get_data(as_text=True)[:160]}")
    assert probed >= 40
    assert wrong == [], "\n".join(wrong)
