"""Deploying apps and reading them back: apps, versions, diffs, rollback, promotion, delete."""

from __future__ import annotations

import json

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from contract.errors import InvalidRequest
from gitops import deploy, reads
from renderer.yamlio import document_spans
from webapp.api.blueprint import bp
from webapp.api.requests import YAML_TYPES, app_row, field, json_body, source_field
from webapp.api.shapes import app_json, live_statuses, version_json
from webapp.auth import requires
from webapp.plane import context
from webapp.query_parameters import SOURCES, argument


def _spec_input() -> tuple[str, str, dict]:
    """The spec text of a deploy request, its name for error messages, and the options."""
    if request.mimetype in YAML_TYPES:
        raw = request.get_data(cache=False)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"the body is not UTF-8 (byte {exc.start})") from exc
        options = {"dry_run": argument("dry_run"), "source_commit": argument("source_commit"),
                   "source": argument("source")}
        return text, argument("filename"), options
    data = json_body()
    spec = data.get("spec")
    if isinstance(spec, str):
        text = spec
    elif isinstance(spec, dict):
        # ensure_ascii=False: YAML reads "\ud83d\ude00" as two lone surrogates, not one emoji
        text = json.dumps(spec, indent=2, ensure_ascii=False)
    elif isinstance(spec, list) and spec and all(isinstance(s, dict) for s in spec):
        _refuse_spec_count(len(spec))  # before thousands of them are serialized
        text = "\n---\n".join(json.dumps(s, indent=2, ensure_ascii=False) for s in spec)
    else:
        raise InvalidRequest('"spec" must be the spec as YAML text, a spec object, or a list of spec objects')
    options = {"dry_run": field(data, "dry_run", bool, required=False, default=False),
               "source_commit": field(data, "source_commit", str, required=False),
               "source": field(data, "source", str, required=False, default="api")}
    return text, field(data, "filename", str, required=False, default="<request>"), options


def check_spec_limits(text: str, filename: str) -> None:
    """Refuse (413) a deploy over MAX_SPECS_PER_REQUEST specs or MAX_SPEC_BYTES in one, before parsing any.

    Every spec of a request is parsed, validated and rendered before anything is decided:
    8,000 specs in one 1 MiB body held a worker for 29 s and grew it by 80 MB. The specs
    are counted and measured by a scan for document markers (renderer.yamlio.document_spans),
    in milliseconds whatever the body holds.
    """
    spans = document_spans(text)
    _refuse_spec_count(len(spans))
    limit = current_app.config["MAX_SPEC_BYTES"]
    for number, span in enumerate(spans, 1):
        if span.size > limit:
            raise RequestEntityTooLarge(
                f"{filename}:{span.line}: spec {number} is {span.size} bytes, over the {limit} bytes one spec may "
                "have (MAX_SPEC_BYTES); make it smaller")


def _refuse_spec_count(count: int) -> None:
    limit = current_app.config["MAX_SPECS_PER_REQUEST"]
    if count > limit:
        raise RequestEntityTooLarge(
            f"the request holds {count} specs, over the {limit} one request may hold (MAX_SPECS_PER_REQUEST); "
            "split them into several requests")


@bp.put("/apps")
@requires("app.deploy")
def deploy_apps():
    text, filename, options = _spec_input()
    check_spec_limits(text, filename)
    if options["source"] not in SOURCES:
        raise InvalidRequest(f"source must be one of {', '.join(SOURCES)}")
    if options["source_commit"] is not None and len(options["source_commit"]) > 255:
        raise InvalidRequest("source_commit is at most 255 characters")
    ctx = context()
    if options["dry_run"]:
        changes = deploy.dry_run(ctx, text, filename=filename)
        return {"dry_run": True, "apps": [
            {"app": f"{c.cluster}:{c.workspace}/{c.app}", "action": c.action, "diff": c.diff, "notes": c.notes}
            for c in changes]}
    versions = deploy.deploy(ctx, text, filename=filename, source=options["source"],
                             source_commit=options["source_commit"])
    status = 202 if any(v.state == "pending" for v in versions) else 200
    return {"dry_run": False, "versions": [version_json(v, with_spec=False) for v in versions]}, status


@bp.get("/apps")
@requires("app.read")
def list_apps():
    rows = reads.list_apps(context(), cluster=argument("cluster"), workspace=argument("workspace"),
                            include_deleted=argument("include_deleted"), limit=argument("limit"),
                            after=argument("after"))
    apps = [app_json(*row) for row in rows]
    next_after = f"{apps[-1]['cluster']}/{apps[-1]['workspace']}/{apps[-1]['name']}" if apps else None
    return {"apps": apps, "next": next_after if len(apps) == argument("limit") else None}


@bp.get("/apps/<cluster>/<workspace>/<app>")
@requires("app.read")
def get_app(cluster: str, workspace: str, app: str):
    row = app_row(cluster, workspace, app)
    latest = reads.list_versions(context(), row, limit=1)
    live = live_statuses(row, latest)
    return {**app_json(row, row.workspace, row.workspace.cluster),
            "latest_version": version_json(latest[0], live=live.get(latest[0].number)) if latest else None}


@bp.delete("/apps/<cluster>/<workspace>/<app>")
@requires("app.delete")
def delete_app(cluster: str, workspace: str, app: str):
    version = deploy.delete_app(context(), app_row(cluster, workspace, app, "app.delete"))
    return version_json(version, with_spec=False), 202 if version.state == "pending" else 200


@bp.get("/apps/<cluster>/<workspace>/<app>/versions")
@requires("app.read")
def list_versions(cluster: str, workspace: str, app: str):
    row = app_row(cluster, workspace, app)
    versions = reads.list_versions(context(), row, limit=argument("limit"), before=argument("before"))
    live = live_statuses(row, versions)
    return {"versions": [version_json(v, with_spec=False, live=live.get(v.number)) for v in versions]}


@bp.get("/apps/<cluster>/<workspace>/<app>/versions/<int:number>")
@requires("app.read")
def get_version(cluster: str, workspace: str, app: str, number: int):
    row = app_row(cluster, workspace, app)
    version = reads.get_version(context(), row, number)
    return version_json(version, live=live_statuses(row, [version]).get(version.number))


@bp.get("/apps/<cluster>/<workspace>/<app>/diff")
@requires("app.read")
def diff_versions(cluster: str, workspace: str, app: str):
    older, newer = argument("from"), argument("to")
    return reads.version_diff(context(), app_row(cluster, workspace, app), older, newer)


@bp.post("/apps/<cluster>/<workspace>/<app>/rollback")
@requires("app.deploy")
def rollback_app(cluster: str, workspace: str, app: str):
    data = json_body()
    version = deploy.rollback(context(), app_row(cluster, workspace, app), field(data, "version", int),
                              source=source_field(data))
    return version_json(version, with_spec=False), 202 if version.state == "pending" else 201


@bp.post("/apps/<cluster>/<workspace>/<app>/promote")
@requires("app.deploy")
def promote_app(cluster: str, workspace: str, app: str):
    data = json_body()
    version = deploy.promote(context(), app_row(cluster, workspace, app), target=field(data, "target", str),
                             number=field(data, "version", int, required=False),
                             name=field(data, "name", str, required=False),
                             overrides=field(data, "overrides", dict, required=False),
                             keep_overrides=field(data, "keep_overrides", bool, required=False, default=True),
                             source=source_field(data))
    return version_json(version, with_spec=False), 202 if version.state == "pending" else 201
