"""The OpenAPI 3.1 document of ``/api/v1``, built from the app's own route table.

Paths, methods, path parameters and the permission each route declares come
from Flask's URL map and the views' authorization declarations, so the
document cannot drift from the routes. Query parameters come from the table
the views read them through (webapp.query_parameters), limits included.
Request bodies are described here by endpoint, their limits taken from where
the server enforces them (name patterns, columns' lengths, token lifetimes).

Responses: each operation declares the success statuses it answers with (its
method's usual one, or those in SUCCESS) and the errors it can meet, each a
JSON error (webapp.errors):

======================  ======================================================
status                  declared for
======================  ======================================================
400, 401, 403           every operation (bad input; no credentials; refused)
404                     operations naming objects: in the path, or the scope
                        or workspace their body names (NAMES_IN_BODY)
409, 413, 415, 422,     operations that change something (name taken or in
503                     use; body too large or not JSON/YAML; spec or profile
                        problems; repository unwritable)
======================  ======================================================

A 5xx other than 503 is never declared: it is a bug. LINKS tell clients (and
schemathesis's stateful tests) which values of a response name objects that
other operations take.
"""

from __future__ import annotations

import functools
import json
import re

from flask import Flask

from gitops.accounts import MIN_PASSWORD
from gitops.tokens import MAX_TOKEN_DAYS
from gitops.clusters import NAME
from gitops.commit_status import MODES as COMMIT_STATUS_MODES
from gitops.workspaces import ENVIRONMENTS
from gitops.models import User
from gitops.policy import ROLES
from gitops.spec_changes import MAX_GLOBS
from gitops.spec_repos import NAME as SPEC_REPO_NAME
from gitops.webhooks import EVENT_TYPES, FORMATS, MAX_OVERLAP, MAX_URL_LENGTH, NAME as WEBHOOK_NAME
from renderer.spec import SCHEMA_DIR, SPEC_SCHEMA
from webapp.query_parameters import INT_MAX, SOURCES, openapi_parameters

_NAME = {"type": "string", "pattern": NAME.pattern}
_SPEC_REPO_NAME = {"type": "string", "pattern": SPEC_REPO_NAME.pattern}
_WEBHOOK_NAME = {"type": "string", "pattern": WEBHOOK_NAME.pattern}
_SCOPE = {"cluster": {"type": "string"}, "workspace": {"type": "string"}}
_SPEC = {"type": "object", "description": "a deploy spec (schemas/deploy-spec.schema.json)"}
_SECRET_PATHS = {"type": "array", "items": {"type": "string"}, "maxItems": 100,
                 "description": "secret-store paths specs may reference besides the workspace's own <workspace>/: "
                                "'prefix/' permits every path below, 'a/b' that one path; changed by a cluster-admin"}

# A cluster's git remote and its credentials, set together and by a tenant-admin only (gitops.egress,
# gitops.credentials); the credentials are sealed and never returned.
_REMOTE = {
    "remote_url": {"type": ["string", "null"], "maxLength": 1024,
                   "description": "https://host/path, ssh://user@host/path or user@host:path (no other transport); "
                                  "user:token@ in an https URL is taken out and sealed; null: no remote"},
    "remote_username": {"type": "string", "description": "https: the user name (for a token, what its server expects)"},
    "remote_password": {"type": "string", "description": "https: the password or token"},
    "remote_ssh_key": {"type": "string", "description": "ssh: the private key, OpenSSH or PEM"},
    "remote_ssh_passphrase": {"type": "string", "description": "ssh: the private key's passphrase"},
    "remote_known_hosts": {"type": "string", "description": "ssh (required): the server's host key lines, as "
                                                            "ssh-keyscan prints them; pinned, never learned"},
}

# A spec repository's settings (gitops.spec_repos, gitops.spec_repo_settings); its credentials are sealed
# and never returned.
_SPEC_REPO_SETTINGS = {
    "branch": {"type": "string", "minLength": 1, "maxLength": 255, "description": "default main"},
    "globs": {"type": "array", "minItems": 1, "maxItems": MAX_GLOBS,
              "items": {"type": "string", "minLength": 1, "maxLength": 255},
              "description": "the spec files it owns, e.g. deploy/**/*.yaml (default: every .yaml and .yml file)"},
    "prune": {"type": "boolean", "description": "a deleted spec file deletes its apps (default false)"},
    "credentials": {"oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["username", "password"],
         "properties": {"username": {"type": "string"}, "password": {"type": "string",
                                                                      "description": "the password or token"}}},
        {"type": "object", "additionalProperties": False, "required": ["ssh_key", "known_hosts"],
         "properties": {"ssh_key": {"type": "string", "description": "the private key, OpenSSH or PEM"},
                        "ssh_passphrase": {"type": "string"},
                        "known_hosts": {"type": "string", "description": "the server's host key lines, pinned"}}},
        {"type": "null"}], "description": "https: username and password (or token); ssh: key and known hosts"},
    "commit_status": {"enum": list(COMMIT_STATUS_MODES),
                      "description": "where each sync's commit status is posted with the https token: auto (the "
                                     "provider of its webhook, or of its host; the default), off, or a provider"},
}

# A status webhook's settings (gitops.webhooks); its URL is sealed and shown only in part, its secret never.
_WEBHOOK_SETTINGS = {
    "url": {"type": "string", "maxLength": MAX_URL_LENGTH,
            "description": "https://...; http only to allowed_host; no user:password@, no #fragment"},
    "events": {"type": "array", "minItems": 1, "items": {"enum": list(EVENT_TYPES)}},
    "format": {"enum": list(FORMATS), "description": "shipyard (schemas/webhook-event.schema.json), or a Slack or "
                                                      "Microsoft Teams incoming-webhook message (default shipyard)"},
    "allowed_host": {"type": ["string", "null"], "maxLength": 253,
                     "description": "the URL's host, which may then be private or loopback, or use http; set by a "
                                    "tenant-admin only"},
}

BODIES: dict[str, dict] = {
    "api.create_cluster": {
        "type": "object", "required": ["name", "profile"],
        "properties": {"name": _NAME, "profile": {"type": "string", "description": "cluster profile YAML"},
                       **_REMOTE},
    },
    "api.update_cluster": {
        "type": "object", "additionalProperties": False,
        "properties": {"profile": {"type": "string"}, **_REMOTE, "secret_paths": _SECRET_PATHS},
    },
    "api.update_tenant": {
        "type": "object", "additionalProperties": False,
        "properties": {"remote_allowed_hosts": {
            "type": "array", "maxItems": 100, "items": {"type": "string"},
            "description": "host names, IP addresses or CIDR ranges that cluster remotes may reach although they "
                           "are loopback, private, link-local or otherwise not public"}},
    },
    "api.create_workspace": {
        "type": "object", "required": ["name"],
        "properties": {"name": _NAME, "environment": {"enum": list(ENVIRONMENTS)},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "quota": {"type": "object"}, "secret_paths": _SECRET_PATHS},
    },
    "api.update_workspace": {
        "type": "object", "additionalProperties": False,
        "properties": {"environment": {"enum": list(ENVIRONMENTS)},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "quota": {"type": "object"}, "secret_paths": _SECRET_PATHS},
    },
    "api.move_host_claim": {
        "type": "object", "required": ["workspace"],
        "properties": {"workspace": _NAME},
    },
    "api.create_binding": {
        "type": "object", "required": ["role", "subject"],
        "properties": {"role": {"enum": list(ROLES)}, "subject_kind": {"enum": ["user", "group", "repo"]},
                       "subject": {"type": "string", "minLength": 1, "maxLength": 255}, **_SCOPE},
    },
    "api.create_token": {
        "type": "object", "required": ["name", "role"],
        "properties": {"name": {"type": "string", "maxLength": 255, "pattern": r"\S"}, "role": {"enum": list(ROLES)},
                       "expires_in_days": {"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_DAYS}, **_SCOPE},
    },
    "api.create_user": {
        "type": "object", "required": ["username", "password"],
        "properties": {"username": {"type": "string", "maxLength": 255, "pattern": r"^\S([\s\S]*\S)?$"},
                       "password": {"type": "string", "minLength": MIN_PASSWORD},
                       "display_name": {"type": "string", "maxLength": User.__table__.c.display_name.type.length},
                       "email": {"type": "string", "maxLength": User.__table__.c.email.type.length}},
    },
    "api.deploy_apps": {
        "type": "object", "required": ["spec"],
        "properties": {
            "spec": {"oneOf": [{"type": "string", "description": "YAML, one or more documents"}, _SPEC,
                               {"type": "array", "items": _SPEC}]},
            "dry_run": {"type": "boolean"}, "source_commit": {"type": "string", "maxLength": 255},
            "source": {"enum": list(SOURCES)}, "filename": {"type": "string"},
        },
    },
    "api.plan": {
        "type": "object", "required": ["files"],
        "properties": {
            "files": {"type": "array", "description": "the spec files, each named as problems will name it",
                      "items": {"type": "object", "required": ["name", "content"],
                                "properties": {"name": {"type": "string", "minLength": 1},
                                               "content": {"type": "string",
                                                           "description": "YAML, one or more deploy specs"}}}},
            "prune": {"type": "boolean", "description": "apps of the workspaces the specs name that no spec "
                                                        "defines are planned as removed"},
        },
    },
    "api.apps_status": {
        "type": "object", "required": ["apps"],
        "properties": {
            "apps": {"type": "array", "minItems": 1, "maxItems": 100,
                     "items": {"type": "string", "pattern": "^[^:/]+:[^:/]+/[^:/]+$",
                               "description": "<cluster>:<workspace>/<app>"}},
            "versions": {"type": "integer", "minimum": 1, "maximum": 100,
                         "description": "how many recent versions of each (default 10)"},
        },
    },
    "api.rollback_app": {
        "type": "object", "required": ["version"],
        "properties": {"version": {"type": "integer", "minimum": 1, "maximum": INT_MAX},
                       "source": {"enum": list(SOURCES)}},
    },
    "api.promote_app": {
        "type": "object", "required": ["target"],
        "properties": {"target": {"type": "string", "pattern": "^[^:]*:[^:]*$", "description": "<cluster>:<workspace>"},
                       "version": {"type": "integer", "minimum": 1, "maximum": INT_MAX},
                       "name": {"type": "string", "description": "the app's name there (deploy-spec.schema.json)"},
                       "overrides": {"type": "object"},
                       "keep_overrides": {"type": "boolean", "description": "apply the overrides the target app was "
                                          "promoted with before these (default true)"},
                       "source": {"enum": list(SOURCES)}},
    },
    "api.register_spec_repo": {
        "type": "object", "required": ["name", "url"], "additionalProperties": False,
        "properties": {"name": _SPEC_REPO_NAME,
                       "url": {"type": "string", "maxLength": 1024,
                               "description": "https://host/path, ssh://user@host/path or user@host:path"},
                       **_SPEC_REPO_SETTINGS},
    },
    "api.update_spec_repo": {"type": "object", "additionalProperties": False, "properties": _SPEC_REPO_SETTINGS},
    "api.sync_spec_repo": {
        "type": "object", "additionalProperties": False,
        "properties": {"whole": {"type": "boolean", "description": "deploy every spec file of the tip, not only "
                                                                  "those changed since the commit last synced"}},
    },
    "api.create_webhook": {
        "type": "object", "required": ["name", "url", "events"], "additionalProperties": False,
        "properties": {"name": _WEBHOOK_NAME, **_WEBHOOK_SETTINGS, **_SCOPE,
                       "app": {"type": "string", "description": "one app of cluster and workspace"}},
    },
    "api.update_webhook": {
        "type": "object", "additionalProperties": False,
        "properties": {**_WEBHOOK_SETTINGS, "state": {"enum": ["active", "paused"],
                                                   "description": "active resumes a paused webhook"}},
    },
    "api.rotate_webhook_secret": {
        "type": "object", "additionalProperties": False,
        "properties": {"overlap_seconds": {
            "type": "integer", "minimum": 0, "maximum": int(MAX_OVERLAP.total_seconds()),
            "description": "how long the old secret signs beside the new one (default 86400: a day)"}},
    },
    "api.create_command": {
        "type": "object", "required": ["type"],
        "properties": {"type": {"enum": ["refresh", "restart", "logs"]},
                       "params": {"type": "object", "description": "refresh: hard; logs: pod, container, tail_lines, "
                                                                   "limit_bytes; restart: none"}},
    },
    "api.create_run": {
        "type": "object",
        "properties": {"params": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
                                  "description": "values for the job's declared params"}},
    },
}

YAML_BODIES = {"api.deploy_apps": {"type": "string", "description": "deploy specs as YAML"}}

_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "object", "properties": {
            "file": {"type": "string"}, "line": {"type": "integer"}, "column": {"type": "integer"},
            "message": {"type": "string"}, "path": {"type": "string"}}}}}}},
}


# Success statuses where an operation's are not its method's usual ones (_USUAL_SUCCESS).
SUCCESS: dict[str, tuple[int, ...]] = {
    "api.deploy_apps": (200, 202), "api.delete_app": (200, 202),  # 202: committed later by the reconciler
    "api.rollback_app": (201, 202), "api.promote_app": (201, 202),
    "api.move_host_claim": (200, 201),  # 201: the host was claimed now, 200: moved
    "api.delete_cluster": (200,),  # says where the repository was archived
    "api.plan": (200,),  # creates nothing
    "api.apps_status": (200,),  # reads
    "api.redeliver_webhook_delivery": (200,),  # the delivery, pending again
}
_USUAL_SUCCESS = {"GET": (200,), "POST": (201,), "PUT": (200,), "PATCH": (200,), "DELETE": (204,)}
_SUCCESS_TEXT = {200: "OK", 201: "Created", 202: "Accepted: committed later by the reconciler", 204: "Done"}

# Operations whose body names a cluster, workspace or scope that may not exist (404).
NAMES_IN_BODY = frozenset({"api.create_binding", "api.create_token", "api.deploy_apps", "api.plan",
                           "api.apps_status", "api.create_webhook"})
_ERROR_TEXT = {
    400: "Bad request: malformed body or parameter", 401: "No or bad credentials", 403: "Not permitted",
    404: "No such object, or not visible to the caller", 409: "Conflict: name taken, object in use",
    413: "Request body too large", 415: "Body type other than JSON (or YAML where accepted)",
    422: "Spec, profile or rendering problems", 503: "The cluster repository could not be written; retry later",
}

# Links: (status, the operations a response leads to, where each of their path parameters is).
_CLUSTER_OPERATIONS = (("api.get_cluster", "GET"), ("api.update_cluster", "PATCH"), ("api.cluster_status", "GET"),
                       ("api.list_workspaces", "GET"), ("api.create_workspace", "POST"),
                       ("api.rotate_cluster_token", "POST"), ("api.delete_cluster", "DELETE"))
_WORKSPACE_OPERATIONS = (("api.get_workspace", "GET"), ("api.update_workspace", "PATCH"),
                         ("api.delete_workspace", "DELETE"))
_APP_OPERATIONS = (("api.get_app", "GET"), ("api.list_versions", "GET"), ("api.get_version", "GET"),
                   ("api.diff_versions", "GET"), ("api.app_status", "GET"), ("api.app_status_history", "GET"),
                   ("api.app_events", "GET"), ("api.app_trace", "GET"), ("api.list_runs", "GET"),
                   ("api.create_command", "POST"), ("api.create_run", "POST"), ("api.rollback_app", "POST"),
                   ("api.promote_app", "POST"), ("api.delete_app", "DELETE"))
LINKS: dict[tuple[str, str], tuple[int, tuple[tuple[str, str], ...], dict[str, str]]] = {
    ("api.create_cluster", "POST"): (201, _CLUSTER_OPERATIONS, {"cluster": "$response.body#/name"}),
    ("api.get_cluster", "GET"): (200, _CLUSTER_OPERATIONS, {"cluster": "$response.body#/name"}),
    ("api.list_clusters", "GET"): (200, _CLUSTER_OPERATIONS, {"cluster": "$response.body#/clusters/0/name"}),
    ("api.create_workspace", "POST"): (201, _WORKSPACE_OPERATIONS, {
        "cluster": "$response.body#/cluster", "workspace": "$response.body#/name"}),
    ("api.list_workspaces", "GET"): (200, _WORKSPACE_OPERATIONS, {
        "cluster": "$request.path.cluster", "workspace": "$response.body#/workspaces/0/name"}),
    ("api.list_apps", "GET"): (200, _APP_OPERATIONS, {
        "cluster": "$response.body#/apps/0/cluster", "workspace": "$response.body#/apps/0/workspace",
        "app": "$response.body#/apps/0/name"}),
    ("api.get_app", "GET"): (200, _APP_OPERATIONS, {
        "cluster": "$response.body#/cluster", "workspace": "$response.body#/workspace",
        "app": "$response.body#/name", "number": "$response.body#/current_version"}),
    ("api.list_versions", "GET"): (200, (("api.get_version", "GET"),), {
        "cluster": "$request.path.cluster", "workspace": "$request.path.workspace", "app": "$request.path.app",
        "number": "$response.body#/versions/0/number"}),
    ("api.create_command", "POST"): (201, (("api.get_command", "GET"),), {"command_id": "$response.body#/id"}),
}

_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


@functools.cache
def _app_name() -> dict:
    """An app's name as deploy specs allow it: no other app can exist."""
    return json.loads((SCHEMA_DIR / SPEC_SCHEMA).read_text())["$defs"]["name"]


def _path_schema(converter: str | None, name: str) -> dict:
    if converter == "int":  # ids and version numbers are integer columns, from 1
        return {"type": "integer", "minimum": 1, "maximum": INT_MAX}
    if name in ("cluster", "workspace"):
        return _NAME
    if name == "app":
        return _app_name()
    if name == "repo":
        return _SPEC_REPO_NAME
    if name == "webhook":
        return _WEBHOOK_NAME
    if name == "kind":
        return {"type": "string", "enum": ["read", "agent"]}
    return {"type": "string", "minLength": 1}


def _path(rule: str) -> tuple[str, list[dict]]:
    params = []

    def replace(match: re.Match) -> str:
        converter, name = match.group(1), match.group(2)
        params.append({"name": name, "in": "path", "required": True, "schema": _path_schema(converter, name)})
        return "{" + name + "}"

    return _PARAMETER.sub(replace, rule), params


def operation_id(endpoint: str, method: str) -> str:
    return endpoint.split(".", 1)[1] + ("" if method in ("GET", "POST") else f"_{method.lower()}")


def _responses(endpoint: str, method: str, names_objects: bool, links: dict) -> dict:
    responses: dict[str, dict] = {}
    for status in SUCCESS.get(endpoint, _USUAL_SUCCESS[method]):
        response: dict = {"description": _SUCCESS_TEXT[status]}
        if status != 204:
            response["content"] = {"application/json": {"schema": {"type": "object"}}}
        if links.get(status):
            response["links"] = links[status]
        responses[str(status)] = response
    errors = [400, 401, 403]
    if names_objects:
        errors.append(404)
    if method != "GET":
        errors += [409, 413, 415, 422, 503]
    for status in sorted(errors):
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return responses


def _links(app: Flask) -> dict[tuple[str, str], dict[int, dict]]:
    """LINKS as OpenAPI link objects, for the operations the app has (each parameter only where taken)."""
    arguments = {(rule.endpoint, method): rule.arguments
                 for rule in app.url_map.iter_rules() for method in rule.methods}
    built: dict[tuple[str, str], dict[int, dict]] = {}
    for source, (status, targets, parameters) in LINKS.items():
        if source not in arguments:
            continue
        for target in targets:
            if target not in arguments:
                continue
            built.setdefault(source, {}).setdefault(status, {})[operation_id(*target)] = {
                "operationId": operation_id(*target),
                "parameters": {name: value for name, value in parameters.items() if name in arguments[target]},
            }
    return built


def document(app: Flask) -> dict:
    paths: dict[str, dict] = {}
    links = _links(app)
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi":
            continue
        view = app.view_functions[rule.endpoint]
        kind, need = getattr(view, "shipyard_authz", ("public", ""))
        path, params = _path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation = {
                "operationId": operation_id(rule.endpoint, method),
                "summary": (view.__doc__ or rule.endpoint.split(".", 1)[1].replace("_", " ")).strip().splitlines()[0],
                "description": f"Needs: {need}" if kind == "permission" else need,
                "parameters": params + openapi_parameters(rule.endpoint),
                "responses": _responses(rule.endpoint, method, bool(params) or rule.endpoint in NAMES_IN_BODY,
                                        links.get((rule.endpoint, method), {})),
            }
            if rule.endpoint in BODIES:
                content = {"application/json": {"schema": BODIES[rule.endpoint]}}
                if rule.endpoint in YAML_BODIES:
                    content["application/yaml"] = {"schema": YAML_BODIES[rule.endpoint]}
                operation["requestBody"] = {"required": True, "content": content}
            if kind == "permission":
                operation["security"] = [{"bearer": []}, {"session": []}]
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Shipyard control plane API", "version": "1"},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token, shy_..."},
                "session": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
    }


__all__ = ["document", "operation_id"]
