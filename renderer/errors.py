"""The one exception tree of Shipyard.

::

    ShipyardError
    ├── SpecError          a deploy spec (or a file of them) is invalid; carries Problems
    ├── ProfileError       a cluster profile is invalid; carries Problems
    ├── RenderError        a template produced output that is not a valid manifest
    ├── RepoError          a cluster repository could not be read or written
    │   └── RepoConflict   the branch moved under us more often than we retry
    ├── NotFound           a named object does not exist (or is not visible to the caller)
    ├── PermissionDenied   the caller may not do this
    ├── Conflict           the request clashes with the current state (name taken, ...)
    └── InvalidRequest     a request is malformed in a way that is not a spec problem

Library errors (ruamel.yaml, jsonschema-rs, pygit2) are translated into these
at the boundary where they happen, so entry points only ever handle this tree.
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


class ShipyardError(Exception):
    """Base of every error Shipyard raises on purpose."""


class _ProblemsError(ShipyardError):
    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SpecError(_ProblemsError):
    """One or more deploy specs are invalid; ``problems`` lists every one."""


class ProfileError(_ProblemsError):
    """A cluster profile is invalid; ``problems`` lists every problem."""


class RenderError(ShipyardError):
    """Rendering produced something that is not a valid Kubernetes object."""


class RepoError(ShipyardError):
    """A cluster repository could not be read or written."""


class RepoConflict(RepoError):
    """The branch kept moving under us; the update was not applied."""


class NotFound(ShipyardError):
    """A named object does not exist, or the caller may not know that it does."""


class PermissionDenied(ShipyardError):
    """The caller is known but may not do this."""


class Conflict(ShipyardError):
    """The request clashes with the current state (a name already taken, ...)."""


class InvalidRequest(ShipyardError):
    """A request is malformed in a way that is not a problem of a spec."""


__all__ = [
    "Problem",
    "ShipyardError",
    "SpecError",
    "ProfileError",
    "RenderError",
    "RepoError",
    "RepoConflict",
    "NotFound",
    "PermissionDenied",
    "Conflict",
    "InvalidRequest",
]
