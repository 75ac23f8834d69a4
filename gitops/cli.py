"""The ``shipyard`` command line: a contract scripts and CI rely on.

Exit codes:

    0  success (including "nothing changed")
    1  invalid input: spec or cluster profile problems, printed as FILE:LINE:COL: message
    2  usage error (unknown option, missing argument)
    3  repository error: cannot read/write/push, or the branch kept moving
    4  not found: the app to delete is not in the repository
    5  internal error: a template produced an invalid object (a bug to report)

``--output json`` prints one JSON document on stdout instead of text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from renderer.errors import ProfileError, RenderError, RepoError, ShipyardError, SpecError
from renderer.profiles import ClusterProfile, load_profile
from renderer.render import Rendering, render_all
from renderer.spec import load_spec_files
from renderer.yamlio import dump_all

from gitops import apply as apply_service
from gitops import layout
from gitops.repo import ClusterRepo

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_REPO = 3
EXIT_NOT_FOUND = 4
EXIT_INTERNAL = 5

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

output_option = click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text for people, json for scripts.",
)
cluster_option = click.option(
    "--cluster", "cluster_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Cluster profile YAML.",
)


def _fail(error: ShipyardError, output: str) -> NoReturn:
    """The one top-level handler: every error becomes an exit code and a message."""
    if isinstance(error, (SpecError, ProfileError)):
        code, kind = EXIT_INVALID, "invalid"
        problems = error.problems
    elif isinstance(error, apply_service.AppNotFound):
        code, kind, problems = EXIT_NOT_FOUND, "not_found", []
    elif isinstance(error, RepoError):
        code, kind, problems = EXIT_REPO, "repository", []
    elif isinstance(error, RenderError):
        code, kind, problems = EXIT_INTERNAL, "render", []
    else:
        code, kind, problems = EXIT_INTERNAL, "error", []
    if output == "json":
        payload = {"ok": False, "error": kind, "message": str(error), "problems": [p.as_dict() for p in problems]}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    elif problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        count = len(problems)
        stderr.print(f"[red]{count} problem{'s' if count != 1 else ''} found[/red]")
    else:
        stderr.print(f"[red]error:[/red] {error}", markup=True)
    sys.exit(code)


def _load(files: tuple[str, ...], cluster_path: Path | None) -> tuple[list, ClusterProfile | None]:
    profile = load_profile(cluster_path) if cluster_path else None
    specs = load_spec_files(files)
    return specs, profile


def _render(files: tuple[str, ...], cluster_path: Path) -> tuple[list[Rendering], ClusterProfile]:
    profile = load_profile(cluster_path)
    return render_all(load_spec_files(files), profile), profile


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shipyard")
def main() -> None:
    """Shipyard: deploy specs in, validated manifests committed for ArgoCD out."""


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--cluster", "cluster_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also check the specs against what this cluster runs.")
@output_option
def validate(files: tuple[str, ...], cluster_path: Path | None, output: str) -> None:
    """Check spec FILES (or directories of them); exit 1 listing every problem."""
    try:
        specs, profile = _load(files, cluster_path)
        if profile is not None:
            render_all(specs, profile)
    except (SpecError, ProfileError) as error:
        if output == "json":
            _fail(error, output)
        for problem in error.problems:
            click.echo(str(problem))
        sys.exit(EXIT_INVALID)
    except ShipyardError as error:
        _fail(error, output)
    if output == "json":
        click.echo(json.dumps({"ok": True, "specs": [{"app": s.key, "kind": s.kind, "cluster": s.cluster,
                                                      "file": s.file, "digest": s.digest} for s in specs]}, indent=2))
    else:
        stderr.print(f"[green]{len(specs)} spec{'s' if len(specs) != 1 else ''} valid[/green]")


@main.command()
@click.argument("files", nargs=-1, required=True)
@cluster_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write app directories (the repository layout) here instead of YAML on stdout.")
@output_option
def render(files: tuple[str, ...], cluster_path: Path, out_dir: Path | None, output: str) -> None:
    """Render spec FILES for a cluster: multi-document YAML on stdout, or files under --out."""
    try:
        renderings, _ = _render(files, cluster_path)
    except ShipyardError as error:
        _fail(error, output)
    for rendering in renderings:
        for note in rendering.notes:
            stderr.print(f"[yellow]note:[/yellow] {rendering.spec.key}: {note}")
    if out_dir is None:
        if output == "json":
            click.echo(json.dumps([{"app": r.spec.key, "objects": r.objects, "application": r.application}
                                   for r in renderings], indent=2, ensure_ascii=False))
        else:
            click.echo(dump_all([obj for r in renderings for obj in [*r.objects, r.application]]), nl=False)
        return
    written = []
    for rendering in renderings:
        directory = out_dir / layout.app_dir(rendering.workspace, rendering.name)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.yaml"):
            if stale.name not in rendering.files:
                stale.unlink()
        for name, data in rendering.files.items():
            (directory / name).write_bytes(data)
        application = out_dir / layout.application_file(rendering.workspace, rendering.name)
        application.parent.mkdir(parents=True, exist_ok=True)
        application.write_bytes(rendering.application_bytes)
        written.append(str(directory))
    if output == "json":
        click.echo(json.dumps({"ok": True, "directories": written}, indent=2))
    else:
        for path in written:
            click.echo(path)


@main.command()
@click.argument("files", nargs=-1, required=True)
@cluster_option
@click.option("--repo", "repo_path", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The cluster's git repository (created with its bootstrap when missing).")
@click.option("--remote", help="Push each commit to this git remote (URL or path).")
@click.option("--author", default="shipyard", show_default=True, help='Who deploys: "Name <email>" or a user name.')
@click.option("--source-commit", help="Commit of the spec repository this deploy comes from (recorded as a trailer).")
@click.option("--deployment-id", help="Deployment id to record (default: a new UUID).")
@output_option
def apply(files, cluster_path, repo_path, remote, author, source_commit, deployment_id, output) -> None:
    """Validate, render and commit spec FILES into the cluster repository as one commit."""
    try:
        renderings, profile = _render(files, cluster_path)
        repo = ClusterRepo(repo_path, branch=profile.branch, remote_url=remote)
        result = apply_service.apply(renderings, profile, repo, author=author,
                                     source_commit=source_commit, deployment_id=deployment_id)
    except ShipyardError as error:
        _fail(error, output)
    _report(result, output)


@main.command()
@click.argument("app")
@cluster_option
@click.option("--repo", "repo_path", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--remote", help="Push the commit to this git remote (URL or path).")
@click.option("--author", default="shipyard", show_default=True)
@output_option
def delete(app: str, cluster_path: Path, repo_path: Path, remote: str | None, author: str, output: str) -> None:
    """Delete APP (WORKSPACE/APP): its manifests and Application go in one commit."""
    workspace, _, name = app.partition("/")
    if not workspace or not name or "/" in name:
        raise click.BadParameter("write the app as WORKSPACE/APP", param_hint="APP")
    try:
        profile = load_profile(cluster_path)
        repo = ClusterRepo(repo_path, branch=profile.branch, remote_url=remote)
        result = apply_service.delete(profile, repo, workspace, name, author=author)
    except ShipyardError as error:
        _fail(error, output)
    _report(result, output)


def _report(result: apply_service.ApplyResult, output: str) -> None:
    if output == "json":
        click.echo(json.dumps({"ok": True, **result.as_dict()}, indent=2, ensure_ascii=False))
        return
    for outcome in result.apps:
        for note in outcome.notes:
            stderr.print(f"[yellow]note:[/yellow] {outcome.key}: {note}")
        stderr.print(f"{outcome.key}: {outcome.action}")
    if result.commit_id:
        click.echo(result.commit_id)
        stderr.print(f"[green]committed[/green] {result.commit_id[:12]} to cluster {result.cluster}"
                     + (" and pushed" if result.pushed else ""))
    else:
        stderr.print(f"nothing changed in cluster {result.cluster}; no commit")


if __name__ == "__main__":  # pragma: no cover
    main()
