"""Prometheus metrics of the control plane, and the text ``/metrics`` serves.

One process (``shipyard up``, tests) counts in memory and serves its own
registry. ``shipyard serve`` runs several gunicorn workers, and a scrape
reaches one of them: there every worker writes its values to files in a
directory of its own (prometheus_client's multiprocess mode) and the worker
that answers sums them all, so a counter covers every worker, including those
that have been restarted, and never goes back.

prometheus_client decides between the two when it is first imported: by
whether ``PROMETHEUS_MULTIPROC_DIR`` is set then. ``serve`` sets it before
anything imports this module (cli.server), and checks that it did. A Gauge
added here needs a ``multiprocess_mode`` (how to combine the workers' values).
"""

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("shipyard_http_requests_total", "HTTP requests served",
                   ["method", "endpoint", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("shipyard_http_request_seconds", "Time to serve an HTTP request",
                            ["endpoint"], registry=REGISTRY)
DEPLOYS = Counter("shipyard_deploys_total", "Versions by how they ended", ["outcome"], registry=REGISTRY)
COMMIT_SECONDS = Histogram("shipyard_commit_seconds", "Time to commit a batch into a cluster repository",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
RECONCILER_REPAIRS = Counter("shipyard_reconciler_repairs_total",
                             "Pending versions the reconciler finished (committed, recorded, superseded or failed)",
                             registry=REGISTRY)


def exposition() -> bytes:
    """Every metric in Prometheus' text format: this process's, or under ``serve`` all workers' summed."""
    if os.environ.get(MULTIPROCESS_DIRECTORY):
        # read afresh on every scrape: workers start, write and are replaced between scrapes
        summed = CollectorRegistry()
        MultiProcessCollector(summed)
        return generate_latest(summed)
    return generate_latest(REGISTRY)


__all__ = ["REGISTRY", "REQUESTS", "REQUEST_SECONDS", "DEPLOYS", "COMMIT_SECONDS", "RECONCILER_REPAIRS",
           "MULTIPROCESS_DIRECTORY", "exposition"]
