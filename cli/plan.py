"""``shipyard plan``: what a merge request's specs would change in each cluster repository.

By default the control plane plans (``POST /api/v1/plan``): it knows what each cluster's agent
reported (the Kubernetes version, the CRDs it serves), what each workspace may claim, and the
repositories' tips. ``--offline`` plans from cluster profiles and clones of the cluster
repositories alone, with the same code (gitops.plan), so for the same profile, repository and
specs both give the same plan document. The offline plan cannot know what only the control
plane knows (live facts, secret paths and host claims): there, the server's plan is the stricter.

The document is shown as text, as a Markdown comment for the merge request (cli.plan_format), or
with ``--output json`` as itself. Exit codes, as ``terraform plan`` has them:

====  ===============================================================================
0     the specs are valid (whatever would change, unless ``--detailed-exitcode``)
1     invalid specs: every problem printed as FILE:LINE:COL: message, as ``deploy`` does
2     ``--detailed-exitcode``: valid, and something would change (2 is also a usage error)
====  ===============================================================================

and the other codes of cli.exits for everything else (not found, not authorized, ...). The
offline path imports no server library and the client path not even the renderer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.client import api_options, client
from cli.exits import EXIT_CODES_HELP, EXIT_PLANNED_CHANGES, Failure
from cli.output import print_json
from contract.errors import Problem, ShipyardError, SpecError
from renderer.paths import expand_paths

if TYPE_CHECKING:
    from renderer.profiles import ClusterProfile


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("files", nargs=-1, required=True)
@click.option("--prune", is_flag=True,
              help="Apps of the workspaces the specs name that no spec defines are planned as removed "
                   "(apps of other workspaces never are).")
@click.option("--format", "shape", type=click.Choice(["text", "markdown"]), default="text", show_default=True,
              help="text for people and job logs; markdown: a merge request's comment (within GitHub's 65,536 "
                   "characters). --output json prints the plan document instead.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when something would change (0: nothing would), as terraform plan does; 2 is also "
                   "the exit code of a usage error.")
@click.option("--offline", is_flag=True,
              help="Plan from cluster profiles and clones of their repositories, without the control plane.")
@click.option("--cluster", "cluster_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="With --offline: a cluster profile (repeat for several clusters).")
@click.option("--repo", "repos", multiple=True, metavar="[CLUSTER=]PATH",
              help="With --offline: a clone of the cluster's repository; CLUSTER=PATH (the cluster its profile "
                   "names) when there are several --cluster profiles.")
@api_options
def plan(files: tuple[str, ...], prune: bool, shape: str, detailed_exitcode: bool, offline: bool,
         cluster_paths: tuple[Path, ...], repos: tuple[str, ...], url, token, output: str) -> None:
    """Show what deploying spec FILES (or directories of them) would change, per cluster: the apps
    added, changed and removed, and the diffs of their manifests. Nothing is written.

    Against the control plane by default (--url/--token, or what `shipyard login` stored); with
    --offline, from --cluster profiles and --repo clones of the cluster repositories.
    """
    if not offline and (cluster_paths or repos):
        raise click.UsageError("--cluster and --repo go with --offline")
    if offline and not cluster_paths:
        raise click.UsageError("--offline needs a --cluster profile and a --repo clone of its repository")
    named, unreadable = _read(files)
    try:
        if offline:
            document = _offline(named, unreadable, cluster_paths, repos, prune)
        else:
            api = client(url, token, output)
            if unreadable:
                raise SpecError(unreadable)
            document = api.call("POST", "/api/v1/plan", json={
                "files": [{"name": name, "content": content} for name, content in named], "prune": prune})
    except ShipyardError as error:
        raise _said(Failure.of(error, output), shape) from error
    except Failure as failure:
        raise _said(failure, shape) from None
    _show(document, shape, output)
    if detailed_exitcode and document["changes"]:
        sys.exit(EXIT_PLANNED_CHANGES)


def _said(failure: Failure, shape: str) -> Failure:
    """With --format markdown, invalid specs also give the merge request's comment: their problems."""
    if shape == "markdown" and failure.output == "text" and failure.problems:
        from cli import plan_format

        click.echo(plan_format.problems([str(problem) for problem in failure.problems]), nl=False)
    return failure


def _read(files: tuple[str, ...]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """(name, text) of each spec file, and a problem for each that cannot be read as UTF-8 text."""
    named, problems = [], []
    for path in expand_paths(files):
        try:
            named.append((str(path), path.read_bytes().decode("utf-8")))
        except OSError as exc:
            problems.append(Problem(str(path), 0, 0, f"cannot read file: {exc.strerror}"))
        except UnicodeDecodeError as exc:
            problems.append(Problem(str(path), 0, 0, f"the file is not UTF-8 text (byte {exc.start})"))
    return named, problems


def _offline(named: list[tuple[str, str]], problems: list[Problem], cluster_paths: tuple[Path, ...],
             repos: tuple[str, ...], prune: bool) -> dict:
    """The plan from profiles and clones, as the control plane would make it from the same (gitops.plan)."""
    from cli.offline import kube_schemas
    from gitops import plan as planning
    from renderer.profiles import load_profile
    from renderer.render import render

    profiles: dict[str, ClusterProfile] = {}
    for path in cluster_paths:
        profile = load_profile(path)
        if profile.name in profiles:
            raise click.BadParameter(f"two profiles of cluster {profile.name!r}", param_hint="--cluster")
        profiles[profile.name] = profile
    clones = _pair(profiles, repos)
    specs, found = planning.load_files(named)
    problems = problems + found
    schemas = kube_schemas()
    renderings: dict[str, list] = {}
    for spec in specs:
        if spec.cluster not in profiles:
            problems.append(spec.problem(f'spec targets cluster "{spec.cluster}": give its profile with --cluster '
                                         f'(given: {", ".join(sorted(profiles))})', ("workspace_fqn",)))
            continue
        try:
            renderings.setdefault(spec.cluster, []).append(render(spec, profiles[spec.cluster], schemas))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return planning.plan(((name, planning.read_clone(clones[name], profiles[name].branch), aimed)
                          for name, aimed in renderings.items()), prune)


def _pair(profiles: dict[str, ClusterProfile], repos: tuple[str, ...]) -> dict[str, Path]:
    """Each profile's clone: ``--repo CLUSTER=PATH``, or with a single profile ``--repo PATH``."""
    clones: dict[str, Path] = {}
    for value in repos:
        name, equals, path = value.partition("=")
        if equals and name in profiles:
            cluster, clone = name, Path(path)
        elif len(profiles) == 1:
            cluster, clone = next(iter(profiles)), Path(value)
        else:
            raise click.BadParameter(f"{value!r}: with several profiles, write CLUSTER=PATH, CLUSTER one of "
                                     f"{', '.join(sorted(profiles))}", param_hint="--repo")
        if cluster in clones:
            raise click.BadParameter(f"two clones of cluster {cluster!r}", param_hint="--repo")
        clones[cluster] = clone
    if missing := sorted(set(profiles) - set(clones)):
        raise click.BadParameter(f"no clone of the repository of cluster {', '.join(missing)}", param_hint="--repo")
    return clones


def _show(document: dict, shape: str, output: str) -> None:
    from cli import plan_format

    if output == "json":
        print_json({"ok": True, **document})
    elif shape == "markdown":
        click.echo(plan_format.markdown(document), nl=False)
    else:
        click.echo(plan_format.text(document), nl=False)


__all__ = ["plan"]
