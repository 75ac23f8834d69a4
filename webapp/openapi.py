"""The OpenAPI 3.1 document of ``/api/v1``, built from the app's own route table.

Paths, methods, path parameters and the permission each route declares come
from Flask's URL map and the views' authorization declarations, so the
document cannot drift from the routes; request bodies and query parameters
are described here, next to each other, by endpoint.
"""

from __future__ import annotations

import re

from flask import Flask

from gitops.policy import ROLES

_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"}
_SCOPE = {"cluster": {"type": "string"}, "workspace": {"type": "string"}}
_SPEC = {"type": "object", "description": "a deploy spec (schemas/deploy-spec.schema.json)"}

BODIES: dict[str, dict] = {
    "api.create_cluster": {
        "type": "object", "required": ["name", "profile"],
        "properties": {"name": _NAME, "profile": {"type": "string", "description": "cluster profile YAML"},
                       "remote_url": {"type": "string"}},
    },
    "api.update_cluster": {
        "type": "object", "additionalProperties": False,
        "properties": {"profile": {"type": "string"}, "remote_url": {"type": "string"}},
    },
    "api.create_workspace": {
        "type": "object", "required": ["name"],
        "properties": {"name": _NAME, "environment": {"enum": ["dev", "staging", "prod", "test", "sandbox"]},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "quota": {"type": "object"}},
    },
    "api.update_workspace": {
        "type": "object", "additionalProperties": False,
        "properties": {"environment": {"enum": ["dev", "staging", "prod", "test", "sandbox"]},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "quota": {"type": "object"}},
    },
    "api.create_binding": {
        "type": "object", "required": ["role", "subject"],
        "properties": {"role": {"enum": list(ROLES)}, "subject_kind": {"enum": ["user", "group"]},
                       "subject": {"type": "string"}, **_SCOPE},
    },
    "api.create_token": {
        "type": "object", "required": ["name", "role"],
        "properties": {"name": {"type": "string"}, "role": {"enum": list(ROLES)},
                       "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 366}, **_SCOPE},
    },
    "api.create_user": {
        "type": "object", "required": ["username", "password"],
        "properties": {"username": {"type": "string"}, "password": {"type": "string", "minLength": 12},
                       "display_name": {"type": "string"}, "email": {"type": "string"}},
    },
    "api.deploy_apps": {
        "type": "object", "required": ["spec"],
        "properties": {
            "spec": {"oneOf": [{"type": "string", "description": "YAML, one or more documents"}, _SPEC,
                               {"type": "array", "items": _SPEC}]},
            "dry_run": {"type": "boolean"}, "source_commit": {"type": "string"},
            "source": {"enum": ["api", "cli", "ci", "dashboard", "spec-repo"]}, "filename": {"type": "string"},
        },
    },
    "api.rollback_app": {
        "type": "object", "required": ["version"],
        "properties": {"version": {"type": "integer", "minimum": 1}, "source": {"type": "string"}},
    },
    "api.promote_app": {
        "type": "object", "required": ["target"],
        "properties": {"target": {"type": "string", "description": "<cluster>:<workspace>"},
                       "version": {"type": "integer", "minimum": 1}, "name": _NAME,
                       "overrides": {"type": "object"}, "source": {"type": "string"}},
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

QUERY: dict[str, list[tuple[str, dict]]] = {
    "api.list_apps": [("cluster", {"type": "string"}), ("workspace", {"type": "string"}),
                      ("include_deleted", {"type": "boolean"}), ("limit", {"type": "integer", "minimum": 1}),
                      ("after", {"type": "string"})],
    "api.list_versions": [("limit", {"type": "integer", "minimum": 1}), ("before", {"type": "integer"})],
    "api.list_audit": [("limit", {"type": "integer", "minimum": 1}), ("before", {"type": "integer"})],
    "api.diff_versions": [("from", {"type": "integer", "minimum": 1}), ("to", {"type": "integer", "minimum": 1})],
    "api.app_status": [("versions", {"type": "integer", "minimum": 1, "maximum": 100})],
    "api.app_status_history": [("limit", {"type": "integer", "minimum": 1}), ("before", {"type": "integer"})],
    "api.list_runs": [("limit", {"type": "integer", "minimum": 1})],
    # read with a YAML body (a JSON body carries them as fields)
    "api.deploy_apps": [("dry_run", {"type": "boolean"}), ("source_commit", {"type": "string"}),
                        ("source", {"enum": ["api", "cli", "ci", "dashboard", "spec-repo"]}),
                        ("filename", {"type": "string"})],
}

_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "object", "properties": {
            "file": {"type": "string"}, "line": {"type": "integer"}, "column": {"type": "integer"},
            "message": {"type": "string"}, "path": {"type": "string"}}}}}}},
}


def _path(rule: str) -> tuple[str, list[dict]]:
    params = []

    def replace(match: re.Match) -> str:
        converter, name = match.group(1), match.group(2)
        schema = {"type": "integer"} if converter == "int" else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return re.sub(r"<(?:(\w+):)?(\w+)>", replace, rule), params


def document(app: Flask) -> dict:
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint == "api.openapi":
            continue
        view = app.view_functions[rule.endpoint]
        kind, need = getattr(view, "shipyard_authz", ("public", ""))
        path, params = _path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation = {
                "operationId": rule.endpoint.split(".", 1)[1] + ("" if method in ("GET", "POST") else f"_{method.lower()}"),
                "summary": (view.__doc__ or rule.endpoint.split(".", 1)[1].replace("_", " ")).strip().splitlines()[0],
                "description": f"Needs: {need}" if kind == "permission" else need,
                "parameters": params + [{"name": name, "in": "query", "required": False, "schema": schema}
                                        for name, schema in QUERY.get(rule.endpoint, [])],
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "201": {"description": "Created"},
                    "202": {"description": "Accepted: committed later by the reconciler"},
                    "204": {"description": "Deleted"},
                    "default": {"description": "An error", "content": {"application/json": {"schema": _ERROR}}},
                },
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
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API token, shy_..."},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"},
        }},
    }


__all__ = ["document"]
