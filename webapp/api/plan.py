"""Planning a merge request: ``POST /api/v1/plan``, what deploying spec files would change; nothing is written.

The body names each file, so problems point into the merge request's own files
(FILE:LINE:COL); the limits of a deploy hold for the files together.
"""

from __future__ import annotations

from flask import current_app
from werkzeug.exceptions import RequestEntityTooLarge

from contract.errors import InvalidRequest
from gitops import planning
from webapp.api.apps import check_spec_limits
from webapp.api.blueprint import bp
from webapp.api.requests import field, json_body
from webapp.auth import requires
from webapp.plane import context


def _files(data: dict) -> list[tuple[str, str]]:
    """The body's files as (name, text), refused (413) over a deploy's limits before any is parsed."""
    files = field(data, "files", list)
    limit = current_app.config["MAX_SPECS_PER_REQUEST"]
    if len(files) > limit:
        raise RequestEntityTooLarge(
            f"the request holds {len(files)} files, over the {limit} specs one request may hold "
            "(MAX_SPECS_PER_REQUEST); plan fewer files at a time")
    named = []
    for index, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"] \
                or not isinstance(item.get("content"), str):
            raise InvalidRequest(f'files[{index}] must be {{"name": "<file name>", "content": "<its text>"}}')
        check_spec_limits(item["content"], item["name"])  # each spec's size, with its file and line
        named.append((item["name"], item["content"]))
    # the specs of all files together: the documents of a file stay whole, joined or not
    check_spec_limits("\n---\n".join(text for _, text in named), "<request>")
    return named


@bp.post("/plan")
@requires("app.read")
def plan():
    """What deploying spec files would change in each cluster repository; nothing is written"""
    data = json_body()
    files = _files(data)
    prune = field(data, "prune", bool, required=False, default=False)
    return planning.plan_files(context(), files, prune=prune)
