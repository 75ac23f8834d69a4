"""Bulk deploy: 5,000 services rendered and committed into one repository as one commit.

What it measures
    5,000 synthetic services (four shapes, 50 apps per workspace, on the demo
    cluster) go through the product's own path: ``load_specs`` ->
    ``render`` -> ``gitops.apply.apply`` with all 5,000 renderings (one
    commit). Two passes:

    pass 1  into empty repositories: every app is created
    pass 2  every spec changed (new image tag), re-rendered and applied into
            the repositories that pass 1 filled: every app is updated

    Reported per pass: specs/s for loading (not part of render), for render
    alone, and for render + commit (render time + the commit's time), the
    commit overhead (commit time / render time), and per-spec render medians.
    The commit of a pass runs in ``--repos`` separate repositories (3 by
    default) and its median is used; render runs once per pass (it is the
    same pure work each time), its per-spec times give median and p90.

    Schema validation: in this fresh process, the first ``load_specs`` (which
    compiles the deploy-spec JSON Schema) is timed against the next ones; then
    the Kubernetes/CRD validator caches are cleared and, per kind, the first
    ``validate_object`` (compiles) is timed against the later ones (reuse).
    After the run the validator caches' hit/miss counts show each validator
    was compiled once per kind.

Run: ``.venv/bin/python benchmarks/bulk.py [--quick] [--profile]``
(``--quick``: 200 services, 2 repositories; seconds.)
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
import statistics
import tempfile
import time
from pathlib import Path

import pygit2
import synthetic
from timing import Samples

from gitops.apply import apply
from gitops.repo import ClusterRepo
from renderer import kube
from renderer import spec as spec_module
from renderer.render import Rendering, render


def load_all(count: int, tag: str) -> tuple[list, Samples]:
    specs, samples = [], Samples("load_specs per spec")
    for index in range(count):
        text = synthetic.spec_text(synthetic.app_name(index), synthetic.workspace_name(index), tag, synthetic.shape_of(index))
        started = time.perf_counter()
        (spec,) = spec_module.load_specs(text, f"<spec {index}>")
        samples.seconds.append(time.perf_counter() - started)
        specs.append(spec)
    return specs, samples


def render_all(specs: list, profile) -> tuple[list[Rendering], Samples]:
    renderings, samples = [], Samples("render per spec")
    for spec in specs:
        started = time.perf_counter()
        renderings.append(render(spec, profile, synthetic.CRD_SCHEMAS))
        samples.seconds.append(time.perf_counter() - started)
    return renderings, samples


def commit_all(renderings: list[Rendering], profile, repos: list[ClusterRepo], expect: str) -> Samples:
    samples = Samples("apply (commit) of all renderings")
    for repo in repos:
        started = time.perf_counter()
        result = apply(renderings, profile, repo, author="bench")
        samples.seconds.append(time.perf_counter() - started)
        actions = {outcome.action for outcome in result.apps}
        if result.commit_id is None or actions != {expect}:
            raise SystemExit(f"expected one commit with every app {expect}, got {result.commit_id} {actions}")
    return samples


def validation_first_vs_later(profile) -> None:
    """Compile-once check: first use of each validator against later uses."""
    print("schema validation: first use (compiles) vs later uses (cached), in this fresh process")
    texts = [synthetic.spec_text(f"warm-{i}", "ws-warm", "1.0.0", "web") for i in range(21)]
    durations = []
    for text in texts:
        started = time.perf_counter()
        spec_module.load_specs(text)
        durations.append(time.perf_counter() - started)
    print(f"  deploy-spec schema, load_specs:   first {durations[0] * 1e3:8.2f} ms"
          f"   later median {statistics.median(durations[1:]) * 1e3:6.2f} ms  (parse + validate)")

    objects = {}
    for shape in synthetic.SHAPE_NAMES:
        rendering = render(synthetic.load_spec("warm", "ws-warm", shape=shape), profile, synthetic.CRD_SCHEMAS)
        for obj in [*rendering.objects, rendering.application]:
            objects.setdefault((obj["apiVersion"], obj["kind"]), obj)
    caches = [getattr(kube, name, None) for name in ("_core_validator", "_crd_validator")]
    if not all(hasattr(cache, "cache_clear") for cache in caches):
        print("  (renderer.kube has no functools caches under the expected names; skipping the kind-by-kind timing)")
        return
    for cache in caches:
        cache.cache_clear()
    first_total = later_total = 0.0
    for (api_version, kind), obj in sorted(objects.items(), key=lambda item: item[0][1]):
        times = []
        for _ in range(21):
            started = time.perf_counter()
            synthetic.CRD_SCHEMAS.validate(obj, profile.kubernetes_version, where="bench")
            times.append(time.perf_counter() - started)
        later = statistics.median(times[1:])
        first_total += times[0]
        later_total += later
        print(f"  {kind + ' ' + api_version:<48} first {times[0] * 1e3:8.2f} ms   later median {later * 1e3:6.3f} ms"
              f"   ({times[0] / later:,.0f}x)")
    print(f"  all {len(objects)} kinds: first uses {first_total * 1e3:.1f} ms in total, later uses {later_total * 1e3:.2f} ms\n")


def cache_report() -> str:
    parts = []
    for module, name in ((spec_module, "_validator"), (kube, "_core_validator"), (kube, "_crd_validator")):
        cache = getattr(module, name, None)
        if hasattr(cache, "cache_info"):
            info = cache.cache_info()
            parts.append(f"{module.__name__}.{name}: {info.misses} compiled, {info.hits:,} reused")
    return "; ".join(parts) if parts else "(no validator caches found)"


def report_pass(title: str, count: int, load: Samples, rendered: Samples, commit: Samples) -> None:
    render_total = sum(rendered.seconds)
    commit_time = commit.median
    print(f"\n{title}: {count:,} specs, one commit")
    print(f"  load_specs (not part of render)   {count / sum(load.seconds):8.1f} specs/s"
          f"   per spec median {load.median * 1e3:6.2f} ms   p90 {load.p90 * 1e3:6.2f} ms")
    print(f"  render alone                      {count / render_total:8.1f} specs/s"
          f"   per spec median {rendered.median * 1e3:6.2f} ms   p90 {rendered.p90 * 1e3:6.2f} ms"
          f"   total {render_total:6.1f} s")
    print(f"  commit (gitops.apply.apply)       {commit_time:8.2f} s median of {len(commit.seconds)} repos"
          f"   (min {min(commit.seconds):.2f} s, max {max(commit.seconds):.2f} s)")
    print(f"  render + commit                   {count / (render_total + commit_time):8.1f} specs/s")
    print(f"  commit overhead: commit / render = {commit_time / render_total:.2f}"
          f"   (render+commit throughput = {render_total / (render_total + commit_time):.0%} of render alone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 services, 2 repositories")
    parser.add_argument("--count", type=int, help="services (default 5000, quick 200)")
    parser.add_argument("--repos", type=int, help="repositories each commit is measured in (default 3, quick 2)")
    parser.add_argument("--profile", action="store_true", help="print cProfile listings of render and of the pass-2 commit")
    args = parser.parse_args()
    count = args.count or (200 if args.quick else 5000)
    repo_count = args.repos or (2 if args.quick else 3)

    print(f"bulk: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pygit2 {pygit2.__version__} (libgit2 {pygit2.LIBGIT2_VERSION}); {count:,} services, "
          f"{synthetic.APPS_PER_WORKSPACE} per workspace, commits measured in {repo_count} repositories\n")
    print(f"CRD schemas: {synthetic.CRD_SCHEMAS.crd_dir if synthetic.CRD_SCHEMAS.checks_custom_resources else 'none (CRD kinds not validated)'}")
    started_run = time.perf_counter()
    profile = synthetic.profile()
    validation_first_vs_later(profile)

    root = Path(tempfile.mkdtemp(prefix="shipyard-bulk-"))
    try:
        repos = [ClusterRepo(root / f"repo-{i}.git", branch=profile.branch) for i in range(repo_count)]

        specs, load1 = load_all(count, "1.0.0")
        renderings, render1 = render_all(specs, profile)
        commit1 = commit_all(renderings, profile, repos, "created")
        report_pass("pass 1 (create)", count, load1, render1, commit1)
        del specs, renderings

        specs, load2 = load_all(count, "1.1.0")
        renderings, render2 = render_all(specs, profile)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            commit2 = commit_all(renderings, profile, repos[:1], "updated")
            profiler.disable()
            commit2.seconds += commit_all(renderings, profile, repos[1:], "updated").seconds
        else:
            commit2 = commit_all(renderings, profile, repos, "updated")
        report_pass("pass 2 (every spec changed)", count, load2, render2, commit2)

        print(f"\nvalidators: {cache_report()}")
        print(f"whole run {time.perf_counter() - started_run:.0f} s")

        if args.profile:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs()
            stats.sort_stats("tottime").print_stats(15)
            stats.sort_stats("cumulative").print_stats(20)
            print(f"\n=== cProfile: pass-2 commit of {count:,} renderings ===\n{out.getvalue()}")
            profiler = cProfile.Profile()
            profiler.enable()
            for s in specs[:200]:
                render(s, profile, synthetic.CRD_SCHEMAS)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs()
            stats.sort_stats("tottime").print_stats(15)
            print(f"=== cProfile: render of 200 specs ===\n{out.getvalue()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
