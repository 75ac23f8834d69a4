"""Latency of deploying one changed service into a large cluster repository.

What it measures
    Cluster repositories holding 100, 1,000 and 10,000 apps (50 apps per
    workspace, the realistic shape; secondary variant: every app in one
    workspace) are built once (see ``synthetic.build_repo``: a few rendered
    shapes stamped with each app's name, committed in large batches, then
    packed). Into each, one existing app is deployed again with a changed spec
    (a new image tag every repetition, so every deploy commits). Peers, per
    repository size:

    shipyard commit          the commit step alone: files already rendered,
                             ``ClusterRepo.commit`` with ``layout.rendering_changes``
                             (what ``gitops.apply.apply`` writes for the app)
    shipyard apply (pre-rendered)
                             ``gitops.apply.apply`` with an already rendered app:
                             the commit step plus what apply adds per deploy
                             (workspace and bootstrap files, Service clash check)
    shipyard render+apply    the full deploy: ``render`` + ``gitops.apply.apply``
    shell git add <app dir>+commit
                             the fairest shell way, in a working-tree clone of
                             the same repository (``git clone``): write the same
                             rendered files, ``git add`` of the app's own
                             directory and its Application file only,
                             ``git commit -q``
    shell git add+commit     the usual shell way, in another clone: the same
                             files, ``git add -A`` (git scans the whole working
                             tree), ``git commit -q``

    Loading the spec (``load_specs``) is not timed: it does not depend on the
    repository. Shipyard and shell write the same files of the same app.

How
    Every peer of every size takes a turn in each round, in an order that
    rotates from round to round (``timing.interleave``), so machine noise hits
    all peers alike; one warm-up round is dropped. Reported: median and p90 of
    the rounds (31 by default), the scaling ratio median@largest /
    median@smallest (target for the full deploy: <= 1.5) and the speed-up
    shell / shipyard at the largest size against both shell peers (target,
    against ``git add -A``: >= 20x).
    ``--profile`` adds cProfile listings of render and of the commit step at
    the largest size.

Run: ``.venv/bin/python benchmarks/apply_latency.py [--quick] [--profile]``
(``--quick``: 100 and 500 apps, 5 rounds; about 15 seconds.)
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import os
import platform
import pstats
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pygit2
import synthetic
from synthetic import git
from timing import interleave, ratio

from contract.repository import app_dir, application_file
from gitops import layout
from gitops.apply import apply
from gitops.repo import ClusterRepo
from renderer.render import Rendering, render
from renderer.spec import Spec


@dataclass
class Target:
    """One repository and the app that gets deployed into it, round after round."""

    label: str  # e.g. "10,000 apps"
    apps: int
    repo: ClusterRepo
    checkout: Path | None  # for "shell git add+commit" (git add -A)
    checkout_app: Path | None  # for "shell git add <app dir>+commit"
    workspace: str
    app: str
    committed: list[Rendering]  # per round: pre-rendered, for "commit"
    prerendered: list[Rendering]  # per round: pre-rendered, for "apply (pre-rendered)"
    specs: list[Spec]  # per round: loaded, rendered inside the timed "render+apply"
    build_seconds: float = 0.0
    clone_seconds: float = 0.0
    no_commit: int = 0  # deploys that (wrongly) changed nothing


def prepare(root: Path, apps: int, profile, rounds: int, *, apps_per_workspace, with_checkout: bool) -> Target:
    directory = root / (f"{apps}-per-ws" if apps_per_workspace else f"{apps}-one-ws")
    built = synthetic.build_repo(directory / "repo.git", apps, profile, apps_per_workspace=apps_per_workspace)
    index = (apps // 2) - (apps // 2) % len(synthetic.SHAPE_NAMES)  # a "web" app in the middle
    workspace, app = synthetic.workspace_name(index, apps_per_workspace), synthetic.app_name(index)
    assert synthetic.shape_of(index) == "web" and built.repo.snapshot().tree_id(app_dir(workspace, app))

    def rendered(kind: str) -> list[Rendering]:
        return [render(synthetic.load_spec(app, workspace, f"2.{r}.0-{kind}"), profile, synthetic.CRD_SCHEMAS)
                for r in range(rounds)]

    checkout, checkout_app, clone_seconds = None, None, 0.0
    if with_checkout:
        checkout, checkout_app = directory / "checkout", directory / "checkout-app"
        started = time.perf_counter()
        for clone in (checkout, checkout_app):
            git("clone", "-q", str(directory / "repo.git"), str(clone))
            git("config", "gc.auto", "0", cwd=clone)  # no background gc in the middle of a timing
        clone_seconds = (time.perf_counter() - started) / 2
    label = f"{apps:,} apps" + ("" if apps_per_workspace else " (1 ws)")
    return Target(label, apps, built.repo, checkout, checkout_app, workspace, app,
                  committed=rendered("c"), prerendered=rendered("p"),
                  specs=[synthetic.load_spec(app, workspace, f"2.{r}.0-a") for r in range(rounds)],
                  build_seconds=built.seconds, clone_seconds=clone_seconds)


# --- the peers ---------------------------------------------------------------------------


def shipyard_commit(target: Target, rendering: Rendering) -> None:
    changes = layout.rendering_changes(rendering)
    message = (f"Deploy {rendering.workspace}/{rendering.name}\n\n"
               f"Shipyard-Spec-Digest: {rendering.workspace}/{rendering.name} {rendering.spec.digest}\n")
    result = target.repo.commit(lambda base: changes, message)
    target.no_commit += result.commit_id is None


def shipyard_apply(target: Target, rendering: Rendering, profile) -> None:
    result = apply([rendering], profile, target.repo, author="bench")
    target.no_commit += result.commit_id is None


def shipyard_render_apply(target: Target, spec: Spec, profile) -> None:
    result = apply([render(spec, profile, synthetic.CRD_SCHEMAS)], profile, target.repo, author="bench")
    target.no_commit += result.commit_id is None


def shell_commit(target: Target, rendering: Rendering, round_index: int, *, app_only: bool = False) -> None:
    """What a CI script does: write the rendered files into a checkout, add, commit.

    ``app_only``: ``git add`` the app's directory and its Application file (in
    its own clone) instead of ``git add -A``.
    """
    checkout = target.checkout_app if app_only else target.checkout
    rendering.write_tree(checkout)
    if app_only:
        git("add", "--", app_dir(rendering.workspace, rendering.name),
            application_file(rendering.workspace, rendering.name), cwd=checkout)
    else:
        git("add", "-A", cwd=checkout)
    git("commit", "-q", "-m", f"Deploy {rendering.workspace}/{rendering.name} (round {round_index})", cwd=checkout)


# --- profiling -----------------------------------------------------------------------------


def profile_listing(title: str, function, repetitions: int, limit: int = 18) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for r in range(repetitions):
        function(r)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    out.write("  -- by cumulative time --\n")
    stats.sort_stats("cumulative").print_stats(limit)
    text = out.getvalue()
    # drop pstats' preamble up to the table
    return f"\n=== cProfile: {title} ({repetitions} repetitions) ===\n" + text[text.find("   Ordered by"):]


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 and 500 apps, 5 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds per peer (default 31, quick 5)")
    parser.add_argument("--sizes", help="comma-separated app counts (default 100,1000,10000)")
    parser.add_argument("--no-single-workspace", action="store_true", help="skip the all-apps-in-one-workspace variant")
    parser.add_argument("--profile", action="store_true", help="print cProfile listings at the largest size")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repositories (path printed)")
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([100, 500] if args.quick else [100, 1000, 10000])
    rounds = args.rounds or (5 if args.quick else 31)
    warmup = 1
    profile = synthetic.profile()
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"apply_latency: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, pygit2 {pygit2.__version__} (libgit2 {pygit2.LIBGIT2_VERSION}), "
          f"{git_version}")
    print(f"CRD schemas: {synthetic.CRD_SCHEMAS.crd_dir if synthetic.CRD_SCHEMAS.checks_custom_resources else 'none (CRD kinds not validated)'}")
    print(f"rounds {rounds} (+{warmup} warm-up), interleaved; sizes {sizes}; temp dir {root}\n")

    try:
        targets: list[Target] = []
        variants = [(synthetic.APPS_PER_WORKSPACE, True)]
        if not args.no_single_workspace:
            variants.append((None, False))
        for apps_per_workspace, with_checkout in variants:
            for apps in sizes:
                target = prepare(root, apps, profile, warmup + rounds,
                                 apps_per_workspace=apps_per_workspace, with_checkout=with_checkout)
                targets.append(target)
                print(f"setup {target.label:<22} built in {target.build_seconds:5.1f} s"
                      + (f", git clone in {target.clone_seconds:5.1f} s (x2)" if with_checkout else ""), flush=True)

        peers = {}
        for t in targets:
            peers[f"shipyard commit            {t.label}"] = lambda r, t=t: shipyard_commit(t, t.committed[r])
            peers[f"shipyard apply (pre-rend.) {t.label}"] = lambda r, t=t: shipyard_apply(t, t.prerendered[r], profile)
            peers[f"shipyard render+apply      {t.label}"] = lambda r, t=t: shipyard_render_apply(t, t.specs[r], profile)
            if t.checkout is not None:
                peers[f"shell git add+commit       {t.label}"] = lambda r, t=t: shell_commit(t, t.committed[r], r)
                peers[f"shell git add <app dir>+commit {t.label}"] = (
                    lambda r, t=t: shell_commit(t, t.committed[r], r, app_only=True))
        started = time.perf_counter()
        samples = interleave(peers, rounds, warmup=warmup)
        print(f"\nmeasured in {time.perf_counter() - started:.0f} s\n")
        for sample in samples.values():
            print(sample.row())
        broken = [t.label for t in targets if t.no_commit]
        if broken:
            raise SystemExit(f"some deploys made no commit (the spec did not change?): {broken}")

        def median(kind: str, target: Target) -> float:
            return next(s for label, s in samples.items() if label.startswith(kind) and label.endswith(target.label)).median

        # The targets are stated for the full sizes: 10,000 apps against 100, 50 apps per workspace.
        at_target_sizes = sizes[0] == 100 and sizes[-1] == 10000
        print()
        for per_ws in (True, False):
            group = [t for t in targets if (t.checkout is not None) == per_ws]
            if len(group) < 2:
                continue
            small, large = group[0], group[-1]
            shape = f"{synthetic.APPS_PER_WORKSPACE} apps per workspace" if per_ws else "all apps in one workspace"
            print(f"scaling, {shape}: median@{large.apps:,} / median@{small.apps:,}")
            for kind in ("shipyard render+apply", "shipyard apply (pre-rend.)", "shipyard commit",
                         "shell git add+commit", "shell git add <app dir>+commit"):
                if not any(label.startswith(kind) and label.endswith(large.label) for label in samples):
                    continue
                note = "  (target <= 1.5)" if at_target_sizes and per_ws and kind == "shipyard render+apply" else ""
                print(f"  {kind:<30} {ratio(median(kind, large), median(kind, small))}{note}")
        large = [t for t in targets if t.checkout is not None][-1]
        print(f"\n{f'speed-up at {large.label}: shell / shipyard':<58} {'git add -A':>10}  {'git add <app dir>':>17}")
        for kind, what in (("shipyard commit", "same files, commit step only"),
                           ("shipyard apply (pre-rend.)", "pre-rendered"),
                           ("shipyard render+apply", "full deploy")):
            shipyard = median(kind, large)
            print(f"  {f'vs {kind} ({what})':<56} {ratio(median('shell git add+commit', large), shipyard):>10}"
                  f"  {ratio(median('shell git add <app dir>+commit', large), shipyard):>17}"
                  + ("  (target >= 20x, vs git add -A)" if at_target_sizes and kind == "shipyard commit" else ""))

        if args.profile:
            for t in [targets[len(sizes) - 1]] + ([targets[-1]] if len(targets) > len(sizes) else []):
                extra = [synthetic.load_spec(t.app, t.workspace, f"3.{r}.0-{kind}") for kind in "rc" for r in range(30)]
                rendered = [render(s, profile, synthetic.CRD_SCHEMAS) for s in extra[30:]]
                if t is targets[len(sizes) - 1]:
                    print(profile_listing(f"render one web service ({t.label})",
                                          lambda r, extra=extra: render(extra[r], profile, synthetic.CRD_SCHEMAS), 30))
                print(profile_listing(f"gitops.apply.apply, pre-rendered, {t.label}",
                                      lambda r, t=t, rendered=rendered: shipyard_apply(t, rendered[r], profile), 30))
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
