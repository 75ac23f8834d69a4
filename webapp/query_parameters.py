"""The query parameters of ``/api/v1``, each declared once per endpoint: the views read them
through this table and the OpenAPI document (webapp.openapi) describes them from it, so the
limits the server enforces are the limits the document declares, and cannot drift apart.

A view asks ``argument("limit")``; the declaration of its endpoint parses and checks the
value (InvalidRequest, a 400, when it is out of bounds) or gives the default. A parameter
a view reads but its endpoint does not declare is a bug that fails at once (KeyError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import request

from contract.errors import InvalidRequest

# Ids and version numbers are integer columns: PostgreSQL refuses to compare them with a larger
# value (a 500), so no number past INT_MAX reaches a query.
INT_MAX = 2**31 - 1
SOURCES = ("api", "cli", "ci", "dashboard", "spec-repo")
_DIGITS = re.compile(r"[0-9]+")
_FLAG_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class WholeNumber:
    """An integer from ``low`` to ``high``, written in ASCII digits."""

    low: int = 1
    high: int = 10_000
    default: int | None = None
    required: bool = False
    description: str = ""

    def parse(self, name: str, raw: str | None) -> int | None:
        if raw is None:
            if self.required:
                raise InvalidRequest(f"the query parameter {name} is required")
            return self.default
        # ASCII digits only ("²".isdigit() holds, and int() refuses it), no longer than the bound:
        # int() of thousands of digits is slow, and refused past 4300 of them
        if not _DIGITS.fullmatch(raw) or len(raw.lstrip("0")) > len(str(self.high)) \
                or not self.low <= int(raw) <= self.high:
            raise InvalidRequest(f"{name} must be a whole number from {self.low} to {self.high}")
        return int(raw)

    def schema(self) -> dict:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.low, "maximum": self.high}
        if self.default is not None:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True)
class Flag:
    """true or false (also 1/0, yes/no); absent is false."""

    description: str = ""

    def parse(self, name: str, raw: str | None) -> bool:
        if raw is None:
            return False
        value = _FLAG_VALUES.get(raw.lower())
        if value is None:
            raise InvalidRequest(f"{name} must be true or false")
        return value

    def schema(self) -> dict:
        return {"type": "boolean", "default": False}


@dataclass(frozen=True)
class Text:
    """A string, at most ``max_length`` long, matching ``pattern``, one of ``choices`` (each when given)."""

    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    default: str | None = None
    description: str = ""

    def parse(self, name: str, raw: str | None) -> str | None:
        if raw is None:
            return self.default
        if self.max_length is not None and len(raw) > self.max_length:
            raise InvalidRequest(f"{name} is at most {self.max_length} characters")
        if self.pattern is not None and not re.search(self.pattern, raw):
            raise InvalidRequest(f"{name} must match {self.pattern}: {self.description}")
        if self.choices and raw not in self.choices:
            raise InvalidRequest(f"{name} must be one of {', '.join(self.choices)}")
        return raw

    def schema(self) -> dict:
        if self.choices:
            schema: dict[str, Any] = {"type": "string", "enum": list(self.choices)}
        else:
            schema = {"type": "string"}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.default is not None:
            schema["default"] = self.default
        return schema


Parameter = WholeNumber | Flag | Text

_PAGE = WholeNumber(high=1000, default=100, description="how many, newest first")
_VERSION = WholeNumber(high=INT_MAX, required=True, description="a version number of the app")

PARAMETERS: dict[str, dict[str, Parameter]] = {
    "api.list_audit": {"limit": _PAGE,
                       "before": WholeNumber(high=INT_MAX, description="events with a smaller id (paging)")},
    "api.list_apps": {
        "cluster": Text(description="only the apps of this cluster"),
        "workspace": Text(description="only the apps of workspaces of this name"),
        "include_deleted": Flag(description="deleted apps too"),
        "limit": WholeNumber(high=10_000, default=1000, description="how many, by cluster, workspace and name"),
        "after": Text(pattern=r"^([^/]*/[^/]*/[^/]*)?$",
                      description="<cluster>/<workspace>/<app>: the next of the previous page"),
    },
    "api.list_versions": {"limit": _PAGE,
                          "before": WholeNumber(high=INT_MAX, description="versions numbered lower (paging)")},
    "api.diff_versions": {"from": _VERSION, "to": _VERSION},
    "api.app_status": {"versions": WholeNumber(high=100, default=10, description="how many recent versions")},
    "api.app_status_history": {"limit": _PAGE,
                               "before": WholeNumber(high=INT_MAX, description="events with a smaller id")},
    "api.list_spec_repo_syncs": {"limit": WholeNumber(high=1000, default=20, description="how many, newest first"),
                                 "before": WholeNumber(high=INT_MAX, description="syncs with a smaller id (paging)")},
    "api.list_webhook_deliveries": {
        "limit": WholeNumber(high=1000, default=20, description="how many, newest first"),
        "before": WholeNumber(high=INT_MAX, description="deliveries with a smaller id (paging)")},
    "api.list_runs": {"limit": WholeNumber(high=1000, default=50, description="how many, newest first")},
    "api.app_trace": {"version": WholeNumber(high=INT_MAX, description="the version (default: the current one)")},
    "api.app_events": {"limit": WholeNumber(high=500, default=50, description="how many, newest first")},
    # read with a YAML body (a JSON body carries them as fields)
    "api.deploy_apps": {
        "dry_run": Flag(description="show what would change; change nothing"),
        "source_commit": Text(max_length=255, description="the commit of the spec's own repository"),
        "source": Text(choices=SOURCES, default="api", description="what sent the deploy"),
        "filename": Text(default="<request>", description="the spec's file name, for error messages"),
    },
}


def argument(name: str) -> Any:
    """This request's query parameter ``name``, parsed and checked as its endpoint declares it."""
    return PARAMETERS[request.endpoint][name].parse(name, request.args.get(name))


def openapi_parameters(endpoint: str) -> list[dict]:
    """The endpoint's query parameters as OpenAPI parameter objects."""
    described = []
    for name, declared in PARAMETERS.get(endpoint, {}).items():
        parameter = {"name": name, "in": "query", "required": getattr(declared, "required", False),
                     "schema": declared.schema()}
        if declared.description:
            parameter["description"] = declared.description
        described.append(parameter)
    return described


__all__ = ["PARAMETERS", "argument", "openapi_parameters", "WholeNumber", "Flag", "Text", "SOURCES", "INT_MAX"]
