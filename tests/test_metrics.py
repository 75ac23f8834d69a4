"""``/metrics``: who may scrape it, and that under ``shipyard serve`` it counts every worker.

The server is real: ``shipyard serve`` with two gunicorn workers, requests on
fresh connections (so both workers serve some), then scrapes that may reach
either worker. Each must report every request, whichever worker answers.
"""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.plane import app_config
from tests.test_cli_plane import ROOT, clean_env, free_port, stop, wait_healthy
from webapp import create_app

METRICS_TOKEN = "scrape-me-" + "x" * 24
REQUESTS = "shipyard_http_requests_total"


def healthz_count(exposition: str) -> float:
    """How many GET /healthz answered 200, as the exposition says."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if (sample.name == REQUESTS and sample.labels.get("endpoint") == "/healthz"
                    and sample.labels.get("status") == "200"):
                return sample.value
    return 0.0


def scrape(client: httpx.Client, url: str) -> str:
    response = client.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.text


def per_process_counts(directory: Path, scratch: Path) -> list[float]:
    """Each process's own count of /healthz, read from its file of the metrics directory alone."""
    counts = []
    for path in sorted(directory.glob("counter_*.db")):
        alone = scratch / path.stem
        alone.mkdir()
        (alone / path.name).write_bytes(path.read_bytes())
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts.append(healthz_count(generate_latest(registry).decode()))
    return counts


def test_serve_sums_every_workers_counts_in_a_private_directory(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = clean_env(tmp_path / "config", SHIPYARD_DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'shipyard.db'}",
                    SHIPYARD_DATA_DIR=str(tmp_path / "data"), SHIPYARD_RECONCILE_INTERVAL="0",
                    SHIPYARD_SECRET_KEY="test-secret-key", SHIPYARD_METRICS_TOKEN=METRICS_TOKEN,
                    TMPDIR=str(temporary), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "not-this-one"))
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--bind", f"127.0.0.1:{port}",
                               "--workers", "2", "--threads", "4"],
                              stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    # no keep-alive: every request opens a new connection, which either worker may accept
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30) as client:
        try:
            wait_healthy(url, server, log)

            def probe(_: int) -> int:
                return client.get(f"{url}/healthz").status_code

            before = healthz_count(scrape(client, url))
            sent = 200
            with ThreadPoolExecutor(16) as pool:
                assert set(pool.map(probe, range(sent))) == {200}
            seen = []
            for round_number in range(8):  # whichever worker answers, it reports every request
                seen.append(healthz_count(scrape(client, url)))
                assert seen[-1] == before + sent + 5 * round_number, seen
                with ThreadPoolExecutor(5) as pool:
                    assert set(pool.map(probe, range(5))) == {200}
            assert seen == sorted(seen)

            (directory,) = temporary.glob("shipyard-metrics-*")  # the server's own, not the one in the environment
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            assert not (tmp_path / "not-this-one").exists()
            # both workers served some: a scrape of either alone would have fallen short
            served = [count for count in per_process_counts(directory, tmp_path) if count]
            assert len(served) == 2 and sum(served) == before + sent + 5 * 8, served

            refused = client.get(f"{url}/metrics")
            assert refused.status_code == 401 and "METRICS_TOKEN" in refused.json()["error"]["message"]
            assert client.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        finally:
            assert stop(server, signal.SIGTERM) == 0, log.read_text()[-4000:]
    assert list(temporary.glob("shipyard-metrics-*")) == []  # removed when serve stopped


def test_metrics_need_the_token_or_being_declared_public(tmp_path):
    app = create_app(app_config(tmp_path / "data", f"sqlite:///{tmp_path / 'shipyard.db'}"))
    try:
        client = app.test_client()
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        message = refused.get_json()["error"]["message"]
        assert "METRICS_TOKEN" in message and "METRICS_PUBLIC" in message

        app.config["METRICS_PUBLIC"] = True
        assert client.get("/metrics").status_code == 200
        assert REQUESTS in client.get("/metrics").get_data(as_text=True)

        # a token, once set, is needed whether or not the metrics are public
        app.config["METRICS_TOKEN"] = METRICS_TOKEN
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
    finally:
        app.extensions["shipyard"].close()


def test_made_up_methods_and_control_characters_stay_out_of_labels_and_log_lines(tmp_path, caplog):
    """Any token is a method to werkzeug: each made-up one must not become a metrics series of
    its own (memory grows with every series), and a path's control characters are escaped in
    the access log, never written raw."""
    from gitops import metrics

    app = create_app(app_config(tmp_path / "data", f"sqlite:///{tmp_path / 'shipyard.db'}", METRICS_PUBLIC=True))
    try:
        client = app.test_client()
        for index in range(20):
            assert client.open("/healthz", method=f"BREW{index}").status_code == 405
        client.get("/no/such%0Aforged line")
        families = {family.name: family for family in metrics.REGISTRY.collect()}
        methods = {sample.labels["method"] for sample in families["shipyard_http_requests"].samples
                   if "method" in sample.labels}
        assert not any(method.startswith("BREW") for method in methods) and "other" in methods
        logged = [record.path for record in caplog.records if getattr(record, "path", None)]
        assert "/no/such\\x0aforged line" in logged and not any("\n" in path for path in logged)
    finally:
        app.extensions["shipyard"].close()
