"""The control plane's Helm chart (charts/shipyard), rendered by the real helm.

``helm lint --strict`` passes with the default values and with each ``ci/`` file; ``helm
template`` output, hooks included, is checked object by object against the Kubernetes 1.33
schemas, and the custom resources (ServiceMonitor, HTTPRoute) against the CRD schemas when
SHIPYARD_CRD_SCHEMAS names them. Then what matters in operation: secrets reach the server only by
reference and the server reads every setting the chart wires (webapp.config on the rendered
environment), the update strategy follows the data volume, the migration Job is a hook only with
PostgreSQL, the probes and the restricted security context, and every combination that would lose
data or cannot run is refused at render time with a message saying what to change, as
values.schema.json refuses values of the wrong shape.

A render takes about 50 ms; each distinct one is made once per test process.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from flask import Flask

from renderer.kube import is_core
from webapp import config as server_config

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "shipyard"
KUBERNETES = "1.33"
PUBLIC_URL = "https://shipyard.example.com"
DEFAULTS = ("--set", f"publicUrl={PUBLIC_URL}")
PRODUCTION = ("-f", str(CHART / "ci" / "production-values.yaml"))
REMOTE = ("-f", str(CHART / "ci" / "remote-values.yaml"))
VALUE_FILES = {"default": DEFAULTS, "production": PRODUCTION, "remote": REMOTE}
# PostgreSQL and a shared key: what every multi-replica combination below starts from
EXTERNAL = (*DEFAULTS, "--set", "database.external=true", "--set", "database.existingSecret=db",
            "--set", "secretKey.existingSecret=keys")
SECRET_SETTINGS = {"SHIPYARD_DATABASE_URL", "SHIPYARD_SECRET_KEY", "SHIPYARD_CREDENTIALS_KEY",
                   "SHIPYARD_METRICS_TOKEN", "SHIPYARD_OIDC_CLIENT_SECRET"}


@functools.cache
def _helm(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)


def render(helm: Path, *values: str) -> list[dict]:
    """Every object ``helm template`` renders (hooks included) for these values."""
    done = _helm(helm, "template", "sy", str(CHART), "--namespace", "shipyard", *values)
    assert done.returncode == 0, done.stderr
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


def refusal(helm: Path, *values: str) -> str:
    """helm's error for values the chart or its schema refuses."""
    done = _helm(helm, "template", "sy", str(CHART), *values)
    assert done.returncode != 0, f"rendered without an error: {' '.join(values)}"
    return done.stderr


def one(objects: list[dict], kind: str) -> dict:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def kinds(objects: list[dict]) -> set[str]:
    return {obj["kind"] for obj in objects}


def server(objects: list[dict]) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def environment(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container["env"]}


def as_flask_reads(value: str):
    """A SHIPYARD_* value as Flask's from_prefixed_env reads it: as JSON where it parses."""
    try:
        return json.loads(value)
    except ValueError:
        return value


# --- the chart as a chart -------------------------------------------------------------------


def test_chart_version_is_the_project_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == chart["appVersion"] == project


def test_schema_and_readme_cover_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)
    readme = (CHART / "README.md").read_text()
    assert [key for key in values if f"`{key}" not in readme] == []


@pytest.mark.parametrize("values", VALUE_FILES)
def test_lint_strict(helm, values):
    done = _helm(helm, "lint", "--strict", str(CHART), *VALUE_FILES[values])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", VALUE_FILES)
def test_every_core_object_is_valid_kubernetes(helm, kube_schemas, values):
    objects = render(helm, *VALUE_FILES[values])
    for obj in objects:
        if is_core(obj["apiVersion"]):
            assert kube_schemas.validate(obj, KUBERNETES, where=f"{values}: {obj['kind']}")


@pytest.mark.parametrize("values, custom", [("production", {"ServiceMonitor"}), ("remote", {"HTTPRoute"})])
def test_custom_resources_match_their_crd_schemas(helm, crd_schemas, values, custom):
    objects = [obj for obj in render(helm, *VALUE_FILES[values]) if not is_core(obj["apiVersion"])]
    assert kinds(objects) == custom
    for obj in objects:
        assert crd_schemas.validate(obj, KUBERNETES, where=f"{values}: {obj['kind']}"), \
            f"no CRD schema for {obj['apiVersion']} {obj['kind']}"


def test_default_values_make_a_single_sqlite_server(helm):
    objects = render(helm, *DEFAULTS)
    assert kinds(objects) == {"ServiceAccount", "PersistentVolumeClaim", "Service", "Deployment"}
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = server(objects)
    assert container["image"] == "ghcr.io/shipyard-dev/shipyard:0.1.0"
    assert container["args"] == ["serve", "--bind", "0.0.0.0:8080", "--workers", "2", "--threads", "8"]
    assert "SHIPYARD_DATABASE_URL" not in environment(container)
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_standard_labels_on_every_object(helm):
    for obj in render(helm, *PRODUCTION):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "shipyard"
        assert labels["app.kubernetes.io/instance"] == "sy"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "shipyard-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"


# --- secrets and settings ---------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_FILES)
def test_secrets_reach_the_server_only_by_reference(helm, values):
    objects = render(helm, *VALUE_FILES[values])
    assert "Secret" not in kinds(objects) and "ConfigMap" not in kinds(objects)
    pods = [obj["spec"]["template"]["spec"] for obj in objects if obj["kind"] in ("Deployment", "Job")]
    for pod in pods:
        for entry in pod["containers"][0]["env"]:
            if entry["name"] in SECRET_SETTINGS:
                assert set(entry) == {"name", "valueFrom"}, entry
                assert set(entry["valueFrom"]) == {"secretKeyRef"}, entry


def test_production_wires_each_secret_from_its_secret(helm):
    env = environment(server(render(helm, *PRODUCTION)))
    references = {name: (entry["valueFrom"]["secretKeyRef"]["name"], entry["valueFrom"]["secretKeyRef"]["key"])
                  for name, entry in env.items() if "valueFrom" in entry}
    assert references == {
        "SHIPYARD_DATABASE_URL": ("shipyard-database", "url"),
        "SHIPYARD_SECRET_KEY": ("shipyard-keys", "secret-key"),
        "SHIPYARD_CREDENTIALS_KEY": ("shipyard-keys", "credentials-key"),
        "SHIPYARD_METRICS_TOKEN": ("shipyard-metrics", "token"),
        "SHIPYARD_OIDC_CLIENT_SECRET": ("shipyard-oidc", "client-secret"),
    }


@pytest.mark.parametrize("values", ["database.url=postgresql+psycopg://app:hunter2@db/shipyard",
                                    "secretKey.value=hunter2", "oidc.clientSecret=hunter2"])
def test_a_secret_cannot_be_given_as_a_value(helm, values):
    assert "values don't meet the specifications of the schema" in refusal(helm, *DEFAULTS, "--set", values)


@pytest.mark.parametrize("values", VALUE_FILES)
def test_the_server_reads_every_setting_the_chart_renders(helm, monkeypatch, values):
    """The rendered environment, each Secret reference standing for a value naming it, loaded
    by the server's own configuration loader: every name is a setting it knows, and each value
    arrives as the setting it is meant for."""
    env = environment(server(render(helm, *VALUE_FILES[values])))
    plain = {}
    for name, entry in env.items():
        if "valueFrom" in entry:
            reference = entry["valueFrom"]["secretKeyRef"]
            plain[name] = f"<{reference['name']}/{reference['key']}>"
        else:
            plain[name] = entry["value"]
    known = set(server_config.DEFAULTS) | {"SECRET_KEY"}
    assert {name.removeprefix("SHIPYARD_") for name in plain} <= known
    monkeypatch.delenv("SHIPYARD_CONFIG", raising=False)
    # without one, the loader would make a key in the pod's data directory, which is not here
    monkeypatch.setenv("SHIPYARD_SECRET_KEY", "<generated in the data volume>")
    for name, value in plain.items():
        monkeypatch.setenv(name, value)
    holder = Flask("chart")
    server_config.load(holder, None)
    for name, value in plain.items():
        assert holder.config[name.removeprefix("SHIPYARD_")] == as_flask_reads(value), name
    assert holder.config["DATA_DIR"] == "/var/lib/shipyard"
    assert holder.config["PUBLIC_URL"] == PUBLIC_URL


def test_oidc_group_roles_become_json(helm):
    env = environment(server(render(helm, *PRODUCTION)))
    assert json.loads(env["SHIPYARD_OIDC_GROUP_ROLES"]["value"]) == {"platform": "tenant-admin",
                                                                     "sre": "cluster-admin"}
    assert env["SHIPYARD_OIDC_ISSUER"]["value"] == "https://login.example.com/realms/platform"
    assert env["SHIPYARD_OIDC_CLIENT_ID"]["value"] == "shipyard"


# --- the data volume and how pods replace each other ------------------------------------------


@pytest.mark.parametrize("values, strategy", [
    ((*DEFAULTS, "--set", "persistence.accessMode=ReadWriteOncePod"), "Recreate"),
    ((*DEFAULTS, "--set", "persistence.accessMode=ReadWriteMany"), "Recreate"),  # SQLite: one server
    ((*EXTERNAL,), "Recreate"),                                                # a ReadWriteOnce claim
    ((*EXTERNAL, "--set", "persistence.accessMode=ReadWriteMany"), "RollingUpdate"),
    (PRODUCTION, "RollingUpdate"),
    (REMOTE, "RollingUpdate"),                                                 # an emptyDir per pod
])
def test_strategy_follows_the_data_volume(helm, values, strategy):
    deployment = one(render(helm, *values), "Deployment")
    assert deployment["spec"]["strategy"]["type"] == strategy
    if strategy == "RollingUpdate":
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_remote_values_keep_pod_local_repositories(helm):
    objects = render(helm, *REMOTE)
    assert "PersistentVolumeClaim" not in kinds(objects)
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert environment(spec["containers"][0])["SHIPYARD_CLUSTER_REMOTE_REQUIRED"]["value"] == "true"


def test_an_existing_claim_is_used_and_not_made(helm):
    objects = render(helm, *DEFAULTS, "--set", "persistence.existingClaim=shipyard-data")
    assert "PersistentVolumeClaim" not in kinds(objects)
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "shipyard-data"}


@pytest.mark.parametrize("values, budget", [(DEFAULTS, False), (PRODUCTION, True), (REMOTE, True),
                                             ((*PRODUCTION, "--set", "pdb.enabled=false"), False)])
def test_disruption_budget_only_with_several_replicas(helm, values, budget):
    objects = render(helm, *values)
    assert ("PodDisruptionBudget" in kinds(objects)) is budget
    if budget:
        pdb = one(objects, "PodDisruptionBudget")
        assert pdb["spec"]["maxUnavailable"] == 1
        pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# --- the migration Job --------------------------------------------------------------------------


def test_migration_job_is_a_hook_with_postgresql_only(helm):
    assert "Job" not in kinds(render(helm, *DEFAULTS))
    objects = render(helm, *PRODUCTION)
    job = one(objects, "Job")
    assert job["metadata"]["annotations"] == {
        "helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-weight": "0",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["db", "upgrade"]
    assert container["image"] == server(objects)["image"]
    env = environment(container)
    assert env["SHIPYARD_DATABASE_URL"] == environment(server(objects))["SHIPYARD_DATABASE_URL"]
    assert set(env) == {"SHIPYARD_DATABASE_URL", "SHIPYARD_DATA_DIR"}
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod  # the chart's own does not exist yet before an install
    server_pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == server_pod["securityContext"]
    assert container["securityContext"] == server(objects)["securityContext"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert env["SHIPYARD_DATA_DIR"]["value"].startswith("/tmp/")
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 300


def test_migration_job_runs_as_a_service_account_made_beforehand(helm):
    objects = render(helm, *EXTERNAL, "--set", "serviceAccount.create=false",
                     "--set", "serviceAccount.name=shipyard-ops")
    assert "ServiceAccount" not in kinds(objects)
    assert one(objects, "Job")["spec"]["template"]["spec"]["serviceAccountName"] == "shipyard-ops"
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "shipyard-ops"


# --- probes and security --------------------------------------------------------------------


def test_probes_ask_healthz(helm):
    container = server(render(helm, *DEFAULTS))
    probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    for probe in probes.values():
        assert probe["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    readiness, liveness = probes["readinessProbe"], probes["livenessProbe"]
    # not ready well before restarted
    assert (readiness["periodSeconds"] * readiness["failureThreshold"]
            < liveness["periodSeconds"] * liveness["failureThreshold"])
    assert readiness["periodSeconds"] <= 5


def test_restricted_security_context(helm):
    objects = render(helm, *DEFAULTS)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 65532
    assert pod["securityContext"]["fsGroup"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/var/lib/shipyard": "data", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"]["emptyDir"]["sizeLimit"] == "416Mi"  # 256 Mi + 10 Mi for each of 2 x 8 threads
    assert pod["automountServiceAccountToken"] is False
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] > 30  # gunicorn's graceful stop
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}


def test_private_ca_bundle_is_mounted_and_named(helm):
    spec = one(render(helm, *PRODUCTION), "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "git-ca")
    volume = next(v for v in spec["volumes"] if v["name"] == "git-ca")
    assert volume["configMap"] == {"name": "internal-ca", "items": [{"key": "ca.crt", "path": "ca-bundle.pem"}]}
    assert environment(container)["SHIPYARD_GIT_CA_BUNDLE"]["value"] == f"{mount['mountPath']}/ca-bundle.pem"


def test_image_by_digest(helm):
    digest = "sha256:" + "a" * 64
    assert server(render(helm, *DEFAULTS, "--set", f"image.digest={digest}"))["image"] == \
        f"ghcr.io/shipyard-dev/shipyard@{digest}"


# --- the ways in and the monitoring ---------------------------------------------------------------


def test_ingress_defaults_to_the_public_host_with_tls(helm):
    ingress = one(render(helm, *PRODUCTION), "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["shipyard.example.com"], "secretName": "shipyard-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "shipyard.example.com"
    assert rule["http"]["paths"] == [{"path": "/", "pathType": "Prefix",
                                      "backend": {"service": {"name": "sy-shipyard", "port": {"name": "http"}}}}]


def test_httproute_defaults_to_the_public_host(helm):
    route = one(render(helm, *REMOTE), "HTTPRoute")
    assert route["spec"]["hostnames"] == ["shipyard.example.com"]
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways", "sectionName": "https"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "sy-shipyard", "port": 80}]


def test_servicemonitor_scrapes_with_the_metrics_token(helm):
    objects = render(helm, *PRODUCTION)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(objects, "Service")["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "shipyard-metrics", "key": "token"}}
    assert "bearerTokenSecret" not in endpoint


def test_network_policy_opens_the_server_port_only(helm):
    policy = one(render(helm, *DEFAULTS, "--set", "networkPolicy.enabled=true"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress stays open: remotes, OIDC, webhooks
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]  # from anywhere
    production = one(render(helm, *PRODUCTION), "NetworkPolicy")
    assert len(production["spec"]["ingress"][0]["from"]) == 2


# --- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, message", [
    ((), "publicUrl is required"),
    ((*DEFAULTS, "--set", "replicaCount=2"), "replicaCount=2 needs PostgreSQL"),
    ((*EXTERNAL, "--set", "replicaCount=2"),
     "replicaCount=2 would split commits over pod-local repositories (persistence.accessMode=ReadWriteOnce)"),
    ((*EXTERNAL, "--set", "replicaCount=3", "--set", "persistence.accessMode=ReadWriteOncePod"),
     "replicaCount=3 would split commits over pod-local repositories (persistence.accessMode=ReadWriteOncePod)"),
    ((*EXTERNAL, "--set", "replicaCount=2", "--set", "persistence.enabled=false"),
     "would split commits over pod-local repositories (persistence.enabled=false)"),
    ((*EXTERNAL, "--set", "replicaCount=2", "--set", "repositories.remoteRequired=true"),
     "replicaCount=2 cannot share one ReadWriteOnce volume"),
    ((*DEFAULTS, "--set", "persistence.enabled=false"), "persistence.enabled=false keeps the data in an emptyDir"),
    ((*EXTERNAL, "--set", "persistence.enabled=false"), "persistence.enabled=false keeps the data in an emptyDir"),
    ((*DEFAULTS, "--set", "database.external=true", "--set", "database.existingSecret=db",
      "--set", "repositories.remoteRequired=true", "--set", "persistence.enabled=false"),
     "secretKey.existingSecret is required"),
    ((*DEFAULTS, "--set", "database.external=true", "--set", "database.existingSecret=db",
      "--set", "persistence.accessMode=ReadWriteMany", "--set", "replicaCount=2"),
     "secretKey.existingSecret is required"),
    ((*DEFAULTS, "--set", "database.external=true"), "database.external=true needs database.existingSecret"),
    ((*DEFAULTS, "--set", "ingress.enabled=true", "--set", "httpRoute.enabled=true",
      "--set", "httpRoute.parentRefs[0].name=public"), "pick one way in"),
    ((*DEFAULTS, "--set", "httpRoute.enabled=true"), "httpRoute.enabled needs httpRoute.parentRefs"),
    ((*DEFAULTS, "--set", "oidc.issuer=https://login.example.com"), "oidc.issuer needs oidc.clientId"),
    ((*DEFAULTS, "--set", "oidc.issuer=https://login.example.com", "--set", "oidc.clientId=shipyard"),
     "oidc.clientSecret.existingSecret"),
    ((*DEFAULTS, "--set", "metrics.serviceMonitor.enabled=true"),
     "metrics.serviceMonitor.enabled needs metrics.token.existingSecret"),
])
def test_refused_at_render_time(helm, values, message):
    assert message in refusal(helm, *values)


def test_refusals_say_what_to_change(helm):
    split = refusal(helm, *EXTERNAL, "--set", "replicaCount=2")
    assert "persistence.accessMode=ReadWriteMany" in split and "repositories.remoteRequired=true" in split
    assert "database.external=true" in refusal(helm, *DEFAULTS, "--set", "replicaCount=2")


@pytest.mark.parametrize("values, message", [
    (("--set", "replicaCount=three"), "at '/replicaCount': got string, want integer"),
    (("--set", "replicaCount=0"), "/replicaCount"),
    (("--set", "replicas=3"), "additional properties 'replicas' not allowed"),
    (("--set", "persistence.accessMode=ReadOnlyMany"), "/persistence/accessMode"),
    (("--set", "persistence.size=lots"), "/persistence/size"),
    (("--set", "image.digest=latest"), "/image/digest"),
    (("--set", "service.type=ExternalName"), "/service/type"),
    (("--set", "oidc.groupRoles.platform=owner"), "/oidc/groupRoles/platform"),
    (("--set", "ingress.host=Shipyard_Example"), "/ingress/host"),
])
def test_schema_rejects_bad_values(helm, values, message):
    error = refusal(helm, *DEFAULTS, *values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_schema_rejects_a_public_url_that_is_not_http(helm):
    error = refusal(helm, "--set", "publicUrl=shipyard.example.com")
    assert "/publicUrl" in error
