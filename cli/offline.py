"""The offline commands: ``validate``, ``render``, ``apply``, ``delete``, on files and repositories alone.

They need no control plane and no database: specs and a cluster profile in,
problems, manifests or a commit out. ``delete`` is one command with the
control plane's delete (cli.history, which names it and calls
``delete_in_repository`` here when it is given a repository). What each needs is imported when it runs
(the renderer's schemas, pygit2 for a repository), so that ``validate``, the
command an editor or a pre-commit hook runs on every save, stays quick.
Failures go through ``cli.exits`` (codes 1-5).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.exits import EXIT_INVALID, Failure
from cli.output import note, output_option, print_json, say
from contract.errors import ProfileError, ShipyardError, SpecError
from renderer.spec import load_spec_files

if TYPE_CHECKING:
    from gitops.apply import ApplyResult
    from renderer.profiles import ClusterProfile
    from renderer.render import Rendering

cluster_option = click.option(
    "--cluster", "cluster_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Cluster profile YAML.",
)


def kube_schemas():
    """What rendered objects are checked against: the core kinds, and the CRD schemas in
    SHIPYARD_CRD_SCHEMAS when it names a directory (the command line is where it is read)."""
    from renderer.kube import KubeSchemas

    return KubeSchemas.from_setting(os.environ.get("SHIPYARD_CRD_SCHEMAS"))


def _render(files: tuple[str, ...], cluster_path: Path) -> tuple[list[Rendering], ClusterProfile]:
    from renderer.profiles import load_profile
    from renderer.render import render_all

    profile = load_profile(cluster_path)
    return render_all(load_spec_files(files), profile, kube_schemas()), profile


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--cluster", "cluster_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also check the specs against what this cluster runs.")
@output_option
def validate(files: tuple[str, ...], cluster_path: Path | None, output: str) -> None:
    """Check spec FILES (or directories of them); exit 1 listing every problem."""
    try:
        if cluster_path is None:
            specs = load_spec_files(files)
        else:
            from renderer.profiles import load_profile
            from renderer.render import render_all

            profile = load_profile(cluster_path)
            specs = load_spec_files(files)
            render_all(specs, profile, kube_schemas())
    except (SpecError, ProfileError) as error:
        if output == "json":
            raise Failure.of(error, output) from error
        for problem in error.problems:  # on stdout, one per line: what editors and CI annotate
            click.echo(str(problem))
        sys.exit(EXIT_INVALID)
    except ShipyardError as error:
        raise Failure.of(error, output) from error
    if output == "json":
        print_json({"ok": True, "specs": [{"app": s.key, "kind": s.kind, "cluster": s.cluster, "file": s.file,
                                           "digest": s.digest} for s in specs]})
    else:
        click.echo(click.style(f"{len(specs)} spec{'s' if len(specs) != 1 else ''} valid", fg="green"), err=True)


@click.command()
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
        raise Failure.of(error, output) from error
    for rendering in renderings:
        for text in rendering.notes:
            note(rendering.spec.key, text)
    if out_dir is None:
        if output == "json":
            print_json([{"app": r.spec.key, "objects": r.objects, "application": r.application}
                        for r in renderings])
        else:
            from renderer.manifest_yaml import dump_all

            click.echo(dump_all([obj for r in renderings for obj in [*r.objects, r.application]]), nl=False)
        return
    written = [str(rendering.write_tree(out_dir)) for rendering in renderings]
    if output == "json":
        print_json({"ok": True, "directories": written})
    else:
        for path in written:
            click.echo(path)


@click.command()
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
    from gitops import apply as apply_service
    from gitops.repo import ClusterRepo

    try:
        renderings, profile = _render(files, cluster_path)
        repo = ClusterRepo(repo_path, branch=profile.branch, remote_url=remote)
        result = apply_service.apply(renderings, profile, repo, author=author, source_commit=source_commit,
                                     deployment_id=deployment_id, schemas=kube_schemas())
    except ShipyardError as error:
        raise Failure.of(error, output) from error
    _report(result, output)


def delete_in_repository(app: str, cluster_path: Path, repo_path: Path, remote: str | None, author: str,
                         output: str) -> None:
    """Delete APP (WORKSPACE/APP) from the cluster repository: its manifests and Application go in one commit."""
    workspace, _, name = app.partition("/")
    if not workspace or not name or "/" in name:
        raise click.BadParameter("write the app as WORKSPACE/APP", param_hint="APP")
    from gitops import apply as apply_service
    from gitops.repo import ClusterRepo
    from renderer.profiles import load_profile

    try:
        profile = load_profile(cluster_path)
        repo = ClusterRepo(repo_path, branch=profile.branch, remote_url=remote)
        result = apply_service.delete(profile, repo, workspace, name, author=author)
    except ShipyardError as error:
        raise Failure.of(error, output) from error
    _report(result, output)


def _report(result: ApplyResult, output: str) -> None:
    if output == "json":
        print_json({"ok": True, **result.as_dict()})
        return
    for outcome in result.apps:
        for text in outcome.notes:
            note(outcome.key, text)
        say(f"{outcome.key}: {outcome.action}")
    if result.commit_id:
        click.echo(result.commit_id)
        say(f"{result.commit_id[:12]} to cluster {result.cluster}" + (" and pushed" if result.pushed else ""),
            label="committed")
    else:
        say(f"nothing changed in cluster {result.cluster}; no commit")
