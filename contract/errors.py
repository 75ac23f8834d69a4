"""The one exception tree of Shipyard, and the stable error codes every edge answers with.

::

    ShipyardError                        code
    ├── SpecError          a deploy spec (or a file of them) is invalid; carries Problems      spec_invalid
    ├── ProfileError       a cluster profile is invalid; carries Problems                      profile_invalid
    ├── RenderError        a template produced output that is not a valid manifest             render_failed
    ├── RepoError          a cluster repository could not be read or written                   repo_unavailable
    │   └── RepoConflict   the branch moved under us more often than we retry                  repo_unavailable
    ├── NotFound           a named object does not exist (or is not visible to the caller)     not_found
    │   └── AppNotFound    no such app in a cluster repository                                 not_found
    ├── Unauthorized       no credentials, or credentials that are not valid                   unauthorized
    ├── PermissionDenied   the caller is known but may not do this                             forbidden
    ├── Conflict           the request clashes with the current state (name taken, ...)        conflict
    └── InvalidRequest     a request is malformed in a way that is not a spec problem          invalid_request

Library errors (ruamel.yaml, jsonschema-rs, pygit2) are translated into these
at the boundary where they happen, so entry points only ever handle this tree.
Each error carries its ``code``; ``ERROR_CODES`` lists every code an edge may
answer with, including the few that come from HTTP itself. The web app turns a
code into an HTTP status (``webapp.errors.HTTP_STATUS``), the command line into
an exit code (``cli.exits.EXIT_OF_CODE``): one table each, and the client side
of the command line maps an API error back by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one input, located as precisely as we can."""

    file: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    column: int  # 1-based; 0 when unknown
    message: str
    path: str = ""  # JSON pointer into the document, "" for the document itself

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        if self.path:
            return f"{where}: {self.message} (at {self.path})"
        return f"{where}: {self.message}"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "path": self.path,
        }


ERROR_CODES = {
    "invalid_request": "a malformed request: body, parameter or value",
    "unauthorized": "no credentials, or credentials that are not valid",
    "forbidden": "the caller may not do this",
    "csrf_failed": "a change by a logged-in browser without its CSRF token",
    "not_found": "no such object, or one the caller may not see",
    "method_not_allowed": "the route does not take this method",
    "conflict": "the request clashes with the current state",
    "payload_too_large": "the body is over the size limit",
    "unsupported_media_type": "a body type other than JSON or YAML",
    "spec_invalid": "deploy spec problems, each with file, line and column",
    "profile_invalid": "cluster profile problems, each with file, line and column",
    "render_failed": "the spec renders to an object Kubernetes would refuse",
    "repo_unavailable": "the cluster repository could not be read or written",
    "internal": "a bug; logged with its traceback, never shown",
}


class ShipyardError(Exception):
    """Base of every error Shipyard raises on purpose."""

    code = "internal"


class _ProblemsError(ShipyardError):
    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SpecError(_ProblemsError):
    """One or more deploy specs are invalid; ``problems`` lists every one."""

    code = "spec_invalid"


class ProfileError(_ProblemsError):
    """A cluster profile is invalid; ``problems`` lists every problem."""

    code = "profile_invalid"


class RenderError(ShipyardError):
    """Rendering produced something that is not a valid Kubernetes object."""

    code = "render_failed"


class RepoError(ShipyardError):
    """A cluster repository could not be read or written."""

    code = "repo_unavailable"


class RepoConflict(RepoError):
    """The branch kept moving under us; the update was not applied."""


class NotFound(ShipyardError):
    """A named object does not exist, or the caller may not know that it does."""

    code = "not_found"


class AppNotFound(NotFound):
    """No such app in a cluster repository (offline apply and delete)."""


class Unauthorized(ShipyardError):
    """No credentials, or credentials that are not valid (wrong, expired or revoked)."""

    code = "unauthorized"


class PermissionDenied(ShipyardError):
    """The caller is known but may not do this."""

    code = "forbidden"


class Conflict(ShipyardError):
    """The request clashes with the current state (a name already taken, ...)."""

    code = "conflict"


class InvalidRequest(ShipyardError):
    """A request is malformed in a way that is not a problem of a spec."""

    code = "invalid_request"


__all__ = [
    "ERROR_CODES",
    "Problem",
    "ShipyardError",
    "SpecError",
    "ProfileError",
    "RenderError",
    "RepoError",
    "RepoConflict",
    "NotFound",
    "AppNotFound",
    "Unauthorized",
    "PermissionDenied",
    "Conflict",
    "InvalidRequest",
]
