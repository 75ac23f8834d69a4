"""Prometheus metrics of the control plane, in one registry that ``/metrics`` serves."""

from prometheus_client import CollectorRegistry, Counter, Histogram

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

__all__ = ["REGISTRY", "REQUESTS", "REQUEST_SECONDS", "DEPLOYS", "COMMIT_SECONDS", "RECONCILER_REPAIRS"]
