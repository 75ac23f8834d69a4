"""Shipyard's images: how big, how long to build, how fast they start next to the same code in a venv.

    python benchmarks/images.py [--rounds 5]

What it measures (tests/images.py builds and runs them: buildah, podman and skopeo on a private store,
the two bases made by mmdebstrap as the tests make them):

    bases            mmdebstrap + import of the build base (debian:12-slim's stand-in) and the run base
                     (distroless python3-debian12's), once
    build, cold      ``images/build.sh`` on an empty layer cache: apt's python3-venv, pip from the
                     package index, the runtime stage; per image
    build, a change  the same after one source file changed, with buildah's layer cache (--layers): what
                     a pipeline that keeps its cache pays (the apt layer reused, pip's step again)
    size             unpacked (``podman images``; the goals: agent < 150 MB, control plane < 250 MB)
                     and gzipped as a registry holds it; the run base's share of each
    start            A/B, alternated A B B A: the control-plane image (``podman run ... serve``) and
                     ``shipyard serve`` from this venv, each from its start to its first 200 of
                     /healthz on a fresh SQLite data directory (migrated on start); the agent image and
                     ``python -m agent`` from this venv, each to its exit on missing settings (the
                     interpreter, the agent's imports, exit 2), the image's compiled modules against the
                     venv's. The image side includes podman's and runc's start of a container: the
                     agent image running ``python -c pass`` and the venv's ``python -c pass`` are measured
                     too, and the agent's imports alone are each side less its own.

Prints medians and ratios; the machine is shared, so only the ratios within one run mean much.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.images import RUN_BASE, RUN_FLAGS, ImageLab  # noqa: E402

GOALS_MB = {"control-plane": 250, "agent": 150}
MB = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until_healthy(url: str, process: subprocess.Popen | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited {process.returncode} before answering")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"{url} did not answer /healthz within {timeout} s")


def image_serve(lab: ImageLab, image: str, work: Path) -> float:
    data = work / f"data-{time.monotonic_ns()}"
    data.mkdir()
    os.chown(data, 65532, 65532)
    port = free_port()
    name = f"bench-{port}"
    started = time.perf_counter()
    lab.podman("run", "--detach", "--name", name, *RUN_FLAGS, "--read-only", "--tmpfs", "/tmp",
               "--volume", f"{data}:/var/lib/shipyard", image, "serve", "--bind", f"127.0.0.1:{port}",
               "--workers", "1")
    try:
        until_healthy(f"http://127.0.0.1:{port}")
        return time.perf_counter() - started
    finally:
        lab.podman("rm", "--force", "--time", "0", name, check=False)


def venv_serve(work: Path) -> float:
    port = free_port()
    env = {**os.environ, "SHIPYARD_DATA_DIR": str(work / f"data-{time.monotonic_ns()}")}
    started = time.perf_counter()
    process = subprocess.Popen([str(Path(sys.executable).parent / "shipyard"), "serve", "--bind",
                                f"127.0.0.1:{port}", "--workers", "1"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until_healthy(f"http://127.0.0.1:{port}", process)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(30)


def image_python(lab: ImageLab, image: str, *args: str, code: int = 0) -> float:
    started = time.perf_counter()
    result = lab.podman("run", "--rm", *RUN_FLAGS, "--read-only", "--entrypoint", "python", image, *args, check=False)
    assert result.returncode == code, result.stderr
    return time.perf_counter() - started


def venv_python(*args: str, code: int = 0) -> float:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHIPYARD_")}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, cwd=ROOT)
    assert result.returncode == code, result.stderr
    return time.perf_counter() - started


def alternate(rounds: int, a, b) -> tuple[list[float], list[float]]:
    first, second = [], []
    for n in range(rounds):
        order = (a, b) if n % 2 == 0 else (b, a)
        for peer in order:
            (first if peer is a else second).append(peer())
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    work = Path(tempfile.mkdtemp(prefix="shipyard-images-"))
    lab = ImageLab(work / "lab")
    try:
        started = time.perf_counter()
        lab.make_bases()
        print(f"bases (mmdebstrap + import)         {time.perf_counter() - started:6.1f} s")
        base = lab.size(RUN_BASE)
        images = {}
        for which in ("control-plane", "agent"):
            cold = lab.build(which, "--layers")
            images[which] = cold.image
            touched = ROOT / "contract" / "__init__.py"
            original = touched.read_bytes()
            try:
                touched.write_bytes(original + b"\n")
                warm = lab.build(which, "--layers")
            finally:
                touched.write_bytes(original)
            size, packed = lab.size(cold.image), lab.compressed_size(cold.image)
            print(f"{which:14} build cold {cold.seconds:6.1f} s, after a change {warm.seconds:6.1f} s; "
                  f"{size / MB:5.0f} MB unpacked ({size / MB / GOALS_MB[which]:.2f}x the {GOALS_MB[which]} MB goal; "
                  f"run base {base / MB:.0f} MB of it), {packed / MB:5.0f} MB gzipped")
        image_times, venv_times = alternate(rounds, lambda: image_serve(lab, images["control-plane"], work),
                                            lambda: venv_serve(work))
        print(f"serve to /healthz  image {statistics.median(image_times):5.2f} s   venv "
              f"{statistics.median(venv_times):5.2f} s   image/venv {statistics.median(image_times) / statistics.median(venv_times):.2f}x")
        agent = images["agent"]
        image_times, venv_times = alternate(rounds, lambda: image_python(lab, agent, "-m", "agent", code=2),
                                            lambda: venv_python("-m", "agent", code=2))
        image_bare, venv_bare = alternate(rounds, lambda: image_python(lab, agent, "-c", "pass"),
                                          lambda: venv_python("-c", "pass"))
        image_agent, venv_agent = (statistics.median(image_times), statistics.median(venv_times))
        image_pass, venv_pass = statistics.median(image_bare), statistics.median(venv_bare)
        print(f"agent start+exit   image {image_agent:5.2f} s   venv {venv_agent:5.2f} s   image/venv "
              f"{image_agent / venv_agent:.2f}x; python -c pass: image {image_pass:5.2f} s, venv {venv_pass:5.2f} s; "
              f"the agent's imports: image {image_agent - image_pass:5.2f} s, venv {venv_agent - venv_pass:5.2f} s, "
              f"image/venv {(image_agent - image_pass) / (venv_agent - venv_pass):.2f}x")
    finally:
        lab.reset()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
