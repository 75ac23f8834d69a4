"""TrueFoundry's Service and pod fields as its exports write them: explicit nulls, probe hosts, mounts,
artifacts downloaded before the app starts, polling_interval, and the fields with no effect here.

Specs are written inline, in TrueFoundry's names, and rendered for the fixture profiles (demo runs
every addon; dev-kind has no secret store, no KEDA). Shipyard's downloader is run as the init
container runs it, against a Hugging Face Hub stand-in on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contract.errors import SpecError
from renderer.artifacts import MOUNT_ROOT
from renderer.profiles import ClusterProfile, load_profile_text
from renderer.spec import load_specs

BASE = """\
type: service
name: chat
workspace_fqn: demo:ml
image:
  type: image
  image_uri: ghcr.io/acme/chat:1.0.0
"""

CACHED_MODEL = BASE + """\
artifacts_download:
  artifacts:
    - type: huggingface-hub
      model_id: Qwen/Qwen2.5-0.5B-Instruct
      revision: main
      download_path_env_variable: MODEL_DIR
  cache_volume:
    cache_size: 20
"""


def objects(rendering, kind: str) -> list[dict]:
    return [o for o in rendering.objects if o["kind"] == kind]


def pod_spec(rendering) -> dict:
    [workload] = [o for o in rendering.objects if o["kind"] in ("Deployment", "Rollout", "CronJob")]
    spec = workload["spec"]
    return spec["jobTemplate"]["spec"]["template"]["spec"] if workload["kind"] == "CronJob" else spec["template"]["spec"]


def main_container(rendering) -> dict:
    [container] = pod_spec(rendering)["containers"]
    return container


def main_container_of(pod: dict) -> dict:
    [container] = pod["containers"]
    return container


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def refusals(text: str, profile=None, cluster=None, kube_schemas=None) -> list[tuple[str, str]]:
    """The (pointer, message) of every problem of a spec, at validation or, given a profile, at rendering."""
    from renderer.render import render

    with pytest.raises(SpecError) as error:
        specs = load_specs(text, "<test>")
        if profile is not None:
            render(specs[0], profile, kube_schemas)
    return [(p.path, p.message) for p in error.value.problems]


# --- explicit nulls ------------------------------------------------------------------------------


EXPORTED = BASE + """\
  command: null
  docker_registry: null
service_account: null
ports:
  - port: 8000
    expose: false
    host: null
    path: null
resources:
  cpu_request: 0.5
  devices: null
  node: null
labels: null
env:
  EMPTY: null
  LEVEL: info
"""


def test_explicit_nulls_of_an_export_read_as_unset_and_keep_the_digest(rendered):
    [exported] = load_specs(EXPORTED)
    [written] = load_specs(BASE + """\
ports:
  - port: 8000
    expose: false
resources:
  cpu_request: 0.5
env:
  EMPTY: null
  LEVEL: info
""")
    assert exported.body == written.body
    assert exported.digest == written.digest
    rendering = rendered("demo", EXPORTED)
    pod = pod_spec(rendering)
    assert pod["serviceAccountName"] == "chat" and "imagePullSecrets" not in pod
    assert env_of(main_container(rendering)) == {"EMPTY": "", "LEVEL": "info"}, "a null env value stays an empty value"


def test_a_problem_after_a_dropped_null_is_located_where_it_is_written():
    text = BASE + "  docker_registry: null\nservice_account: null\nreplicas: many\n"
    [problem] = refusals(text)
    assert problem[0] == "/replicas"
    with pytest.raises(SpecError) as error:
        load_specs(text)
    assert error.value.problems[0].line == 9


# --- probes --------------------------------------------------------------------------------------


def test_a_probe_host_is_the_host_header_and_the_kubelet_still_probes_the_pod(rendered):
    rendering = rendered("demo", BASE + """\
readiness_probe:
  config:
    type: http
    path: /health
    port: 8000
    host: chat.example.com
""")
    probe = main_container(rendering)["readinessProbe"]["httpGet"]
    assert probe["httpHeaders"] == [{"name": "Host", "value": "chat.example.com"}]
    assert "host" not in probe


def test_truefoundry_probe_bounds_are_accepted_and_liveness_success_must_be_one(rendered):
    rendering = rendered("demo", BASE + """\
readiness_probe:
  config: {type: http, path: /health, port: 8000}
  initial_delay_seconds: 7200
  success_threshold: 300
""")
    assert main_container(rendering)["readinessProbe"]["successThreshold"] == 300
    [(path, message)] = refusals(BASE + """\
liveness_probe:
  config: {type: http, path: /health, port: 8000}
  success_threshold: 2
""")
    assert path == "/liveness_probe/success_threshold" and "must be 1" in message


# --- mounts --------------------------------------------------------------------------------------


MOUNTED = BASE + """\
mounts:
  - type: string
    mount_path: /etc/chat/config.toml
    data: |
      [server]
      threads = 4
  - type: secret
    mount_path: /etc/chat/key.pem
    secret_fqn: tfy-secret://acme:chat:tls-key
  - type: volume
    mount_path: /data
    volume_fqn: tfy-volume://demo:ml:chat-data
  - type: volume
    mount_path: /models
    volume_fqn: tfy-k8s-volume://chat-data
    sub_path: models/v2
env:
  API_KEY: tfy-secret://acme:chat:api-key
"""


def test_mounts_become_subpath_files_and_existing_claims(rendered):
    rendering = rendered("demo", MOUNTED)
    [configmap] = objects(rendering, "ConfigMap")
    assert configmap["data"] == {"file-0": "[server]\nthreads = 4\n"}
    [external] = objects(rendering, "ExternalSecret")
    assert external["spec"]["data"] == [
        {"secretKey": "API_KEY", "remoteRef": {"key": "acme/chat", "property": "api-key"}},
        {"secretKey": "file-1", "remoteRef": {"key": "acme/chat", "property": "tls-key"}},
    ]
    pod = pod_spec(rendering)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["mounted-files"]["configMap"] == {"name": configmap["metadata"]["name"]}
    assert volumes["mounted-secrets"]["secret"] == {"secretName": "chat-secrets",
                                                     "items": [{"key": "file-1", "path": "file-1"}]}
    assert [v["persistentVolumeClaim"] for v in volumes.values() if "persistentVolumeClaim" in v] == [
        {"claimName": "chat-data"}], "two mounts of one claim share its volume"
    mounts = {m["mountPath"]: m for m in main_container(rendering)["volumeMounts"]}
    assert mounts["/etc/chat/config.toml"] == {"name": "mounted-files", "mountPath": "/etc/chat/config.toml",
                                               "subPath": "file-0", "readOnly": True}
    assert mounts["/etc/chat/key.pem"]["subPath"] == "file-1" and mounts["/etc/chat/key.pem"]["readOnly"]
    assert mounts["/data"] == {"name": "volume-0", "mountPath": "/data"}
    assert mounts["/models"] == {"name": "volume-0", "mountPath": "/models", "subPath": "models/v2"}


def test_new_file_content_renames_the_configmap_so_the_pods_roll(rendered):
    before = rendered("demo", MOUNTED)
    after = rendered("demo", MOUNTED.replace("threads = 4", "threads = 8"))
    [old], [new] = objects(before, "ConfigMap"), objects(after, "ConfigMap")
    assert old["metadata"]["name"] != new["metadata"]["name"]
    assert pod_spec(before) != pod_spec(after)


def test_mounts_reach_job_pods_with_and_without_argo(rendered):
    job = MOUNTED.replace("type: service", "type: job").replace("name: chat", "name: nightly")
    workflow = next(o for o in rendered("demo", job).objects if o["kind"] == "WorkflowTemplate")
    assert {v["name"] for v in workflow["spec"]["volumes"]} == {"mounted-files", "mounted-secrets", "volume-0"}
    [template] = workflow["spec"]["templates"]
    assert "/etc/chat/config.toml" in {m["mountPath"] for m in template["container"]["volumeMounts"]}
    files_only = BASE.replace("type: service", "type: job").replace("name: chat", "name: nightly") + """\
mounts:
  - {type: string, mount_path: /etc/nightly.conf, data: x}
"""
    cronjob_pod = pod_spec(rendered("kind", files_only))  # no argo_workflows: a CronJob
    assert [v["name"] for v in cronjob_pod["volumes"]] == ["mounted-files"]
    assert main_container_of(cronjob_pod)["volumeMounts"][0]["mountPath"] == "/etc/nightly.conf"


def test_a_secret_mount_needs_a_secret_store(cluster, kube_schemas):
    problems = refusals(MOUNTED.replace("demo:ml", "dev-kind:ml").replace("tfy-volume://demo", "tfy-volume://dev-kind"),
                        cluster("kind"), kube_schemas=kube_schemas)
    assert ("/mounts/1/secret_fqn", 'cluster "dev-kind" has no external_secrets addon, which secret mounts need') in problems


def test_a_volume_of_another_workspace_is_refused_with_the_claim_to_write(cluster, kube_schemas):
    text = BASE + "mounts:\n  - type: volume\n    mount_path: /data\n    volume_fqn: tfy-volume://tfy-aws:demo-ws:files\n"
    [(path, message)] = refusals(text, cluster("demo"), kube_schemas=kube_schemas)
    assert path == "/mounts/0/volume_fqn"
    assert "tfy-volume://demo:ml:files" in message


@pytest.mark.parametrize(("mount_path", "says"), [
    ("/dev/shm", "shared memory"),
    ("/dev/shm/cache", "shared memory"),
    ("/proc/config", "runtime mounts itself"),
    ("/etc/hosts", "kubelet"),
    ("/var/run/secrets/kubernetes.io/serviceaccount/token", "service account token"),
    ("/var/run/secrets", "service account token"),
    ("/usr", "hide the image's own /usr"),
    (f"{MOUNT_ROOT}/model", "artifacts_download"),
    ("/data/../etc/passwd", "plain absolute path"),
])
def test_mounts_at_paths_a_container_needs_are_refused(mount_path: str, says: str):
    [(path, message)] = refusals(BASE + f"mounts:\n  - type: string\n    mount_path: {mount_path}\n    data: x\n")
    assert path == "/mounts/0/mount_path" and says in message


def test_clashing_mount_paths_are_refused():
    text = BASE + """\
mounts:
  - {type: string, mount_path: /etc/app/config, data: x}
  - {type: volume, mount_path: /etc/app/config, volume_fqn: "tfy-k8s-volume://data"}
  - {type: string, mount_path: /etc/app/config/inner, data: y}
  - {type: volume, mount_path: /data, volume_fqn: "tfy-k8s-volume://data"}
  - {type: string, mount_path: /data/settings.json, data: z}
"""
    problems = refusals(text)
    assert problems == [
        ("/mounts/1/mount_path", '"/etc/app/config" is mounted twice (also at mounts/0)'),
        ("/mounts/2/mount_path", '"/etc/app/config/inner" is inside "/etc/app/config", which mounts/0 makes a file'),
    ], "a file inside a mounted volume is allowed (Kubernetes nests mounts)"


# --- artifacts -----------------------------------------------------------------------------------


def test_a_model_is_downloaded_by_an_init_container_before_the_app_starts(rendered):
    rendering = rendered("demo", CACHED_MODEL + "env:\n  HF_TOKEN: tfy-secret://acme:ml:hf-token\n")
    pod = pod_spec(rendering)
    [download] = pod["initContainers"]
    path = f"{MOUNT_ROOT}/huggingface/Qwen/Qwen2.5-0.5B-Instruct/main"
    assert download["command"] == ["python", "-m", "downloader"]
    assert download["args"] == ["huggingface", "--repo-id=Qwen/Qwen2.5-0.5B-Instruct", "--revision=main",
                                f"--dest={path}", *(f"--ignore-pattern={p}" for p in ("*.h5", "*.ot", "*.tflite", "*.msgpack"))]
    assert download["image"] == rendering.profile.downloader_image
    assert env_of(download)["HF_TOKEN"] == {"secretKeyRef": {"name": "chat-secrets", "key": "HF_TOKEN"}}
    assert "nvidia.com/gpu" not in json.dumps(download["resources"])
    container = main_container(rendering)
    assert env_of(container)["MODEL_DIR"] == path
    assert {"name": "artifacts", "mountPath": MOUNT_ROOT, "readOnly": True} in container["volumeMounts"]


def test_one_pod_at_a_time_gets_a_readwriteonce_cache_and_several_a_shared_one(rendered):
    single = rendered("demo", CACHED_MODEL + "replicas: 1\nrollout_strategy:\n  type: rolling_update\n  max_surge_percentage: 0\n")
    [claim] = objects(single, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi" and "storageClassName" not in claim["spec"]
    volume = next(v for v in pod_spec(single)["volumes"] if v["name"] == "artifacts")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert not [n for n in single.notes if "ReadWriteMany" in n]

    surging = rendered("demo", CACHED_MODEL + "replicas: 1\n")  # a rolling update's 25% surge runs two pods
    [shared] = objects(surging, "PersistentVolumeClaim")
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"]
    assert shared["metadata"]["name"] != claim["metadata"]["name"], "an access mode is immutable: a new claim"
    assert [n for n in surging.notes if "default StorageClass must offer ReadWriteMany" in n]

    classed = rendered("demo", CACHED_MODEL + "    storage_class: efs-sc\nreplicas: 3\n")
    assert objects(classed, "PersistentVolumeClaim")[0]["spec"]["storageClassName"] == "efs-sc"
    assert not [n for n in classed.notes if "ReadWriteMany" in n]


def test_without_a_cache_volume_the_files_live_as_long_as_the_pod(rendered):
    rendering = rendered("demo", CACHED_MODEL.replace("  cache_volume:\n    cache_size: 20\n", ""))
    assert not objects(rendering, "PersistentVolumeClaim")
    assert {"name": "artifacts", "emptyDir": {}} in pod_spec(rendering)["volumes"]


def test_the_profile_names_the_downloader_image():
    profile = load_profile_text("""\
name: mirror
flavor: generic
git: {repo_url: "https://git.example.com/mirror.git"}
artifacts:
  downloader_image: registry.internal/shipyard-agent:0.1.0
""")
    assert profile.downloader_image == "registry.internal/shipyard-agent:0.1.0"
    assert ClusterProfile("x", "generic", "1.33", "https://git.example.com/x.git").downloader_image.startswith(
        "ghcr.io/shipyard-dev/shipyard-agent:")


def test_truefoundry_registry_artifacts_and_clashing_variables_are_refused():
    problems = refusals(BASE + """\
env:
  MODEL_DIR: /models
artifacts_download:
  artifacts:
    - type: truefoundry-artifact
      artifact_version_fqn: model:acme/ml/classifier:3
      download_path_env_variable: CLASSIFIER
    - type: huggingface-hub
      model_id: org/a
      revision: main
      download_path_env_variable: MODEL_DIR
    - type: huggingface-hub
      model_id: org/b
      revision: main
      download_path_env_variable: CLASSIFIER
""")
    paths = [path for path, _ in problems]
    assert paths == ["/artifacts_download/artifacts/0/type", "/artifacts_download/artifacts/1/download_path_env_variable",
                     "/artifacts_download/artifacts/2/download_path_env_variable"]
    assert "TrueFoundry's artifact registry" in problems[0][1]


# --- autoscaling, root path, fields without effect ------------------------------------------------


AUTOSCALED = BASE + """\
replicas:
  max_replicas: 4
  polling_interval: 10
"""


def test_polling_interval_is_kedas_and_a_note_where_an_hpa_scales(rendered):
    [scaled] = objects(rendered("demo", AUTOSCALED), "ScaledObject")
    assert scaled["spec"]["pollingInterval"] == 10
    assert scaled["spec"]["minReplicaCount"] == 1, "TrueFoundry's min_replicas default"
    hpa_rendering = rendered("kind", AUTOSCALED)
    [hpa] = objects(hpa_rendering, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 1
    assert [n for n in hpa_rendering.notes if n.startswith("replicas.polling_interval has no effect")]


def test_replicas_written_as_a_float_render_as_a_count(rendered):
    """TrueFoundry's Service.replicas is a float (confloat), so an export may say 2.0; Kubernetes reads an int32."""
    [deployment] = objects(rendered("demo", BASE + "replicas: 2.0\n"), "Deployment")
    assert deployment["spec"]["replicas"] == 2 and isinstance(deployment["spec"]["replicas"], int)


def test_tfy_service_root_path_is_the_exposed_ports_path(rendered):
    served = rendered("demo", BASE + "  command: uvicorn app:app --root-path $(TFY_SERVICE_ROOT_PATH)\n"
                              "ports:\n  - port: 8000\n    host: chat.example.com\n    path: /v1/chat/\n")
    assert env_of(main_container(served))["TFY_SERVICE_ROOT_PATH"] == "/v1/chat"
    at_root = rendered("demo", BASE + "  command: vllm serve --root-path '$(TFY_SERVICE_ROOT_PATH)'\n")
    assert env_of(main_container(at_root))["TFY_SERVICE_ROOT_PATH"] == ""
    assert "TFY_SERVICE_ROOT_PATH" not in env_of(main_container(rendered("demo", BASE)))
    own = rendered("demo", BASE + "ports:\n  - port: 8000\n    host: chat.example.com\n    path: /v1/\n"
                           "env:\n  TFY_SERVICE_ROOT_PATH: /custom\n")
    assert env_of(main_container(own))["TFY_SERVICE_ROOT_PATH"] == "/custom"


def test_truefoundry_fields_without_effect_are_accepted_with_a_note(rendered):
    rendering = rendered("demo", BASE + """\
allow_interception: true
auto_shutdown:
  wait_time: 900
labels:
  tfy_sticky_session_header_name: x-session-id
""")
    notes = " ".join(rendering.notes)
    assert "allow_interception has no effect" in notes
    assert "auto_shutdown has no effect" in notes
    assert "tfy_sticky_session_header_name" in notes
    assert pod_spec(rendering) == pod_spec(rendered("demo", BASE + "labels:\n  tfy_sticky_session_header_name: x-session-id\n"))


# --- the downloader ------------------------------------------------------------------------------


COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_FILES = {"config.json": b'{"hidden_size": 8}', "model.safetensors": b"\x00" * 4096, "tf_model.h5": b"keras"}


class _Hub(BaseHTTPRequestHandler):
    """The part of the Hub's HTTP API snapshot_download reads: a revision's commit, its file tree, the files."""

    served: list[str]
    authorization: list[str | None]

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        type(self).authorization.append(self.headers.get("Authorization"))
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/models/gated/model/"):
            return self._send(403, b"{}", {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"}, head)
        if path == "/api/models/org/model/revision/main":
            info = {"id": "org/model", "sha": COMMIT, "siblings": [{"rfilename": name} for name in HUB_FILES]}
            return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
        if path == f"/api/models/org/model/tree/{COMMIT}":
            tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in HUB_FILES.items()]
            return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, head)
        prefix = f"/org/model/resolve/{COMMIT}/"
        if path.startswith(prefix) and path[len(prefix):] in HUB_FILES:
            data = HUB_FILES[path[len(prefix):]]
            if not head:
                type(self).served.append(path[len(prefix):])
            return self._send(200, data, {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": COMMIT}, head)
        return self._send(404, b"{}", {"X-Error-Code": "RepoNotFound", "X-Error-Message": "not found"}, head)


@pytest.fixture
def hub():
    handler = type("Hub", (_Hub,), {"served": [], "authorization": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_downloader(endpoint: str, home: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home / ".huggingface"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "downloader", "huggingface", *args], check=False, capture_output=True,
                          text=True, env=env, timeout=120, cwd=Path(__file__).resolve().parent.parent)


def test_the_downloader_fetches_a_revision_once_and_checks_it_after(hub, tmp_path):
    handler, endpoint = hub
    dest = tmp_path / "huggingface" / "org" / "model" / "main"
    args = ("--repo-id=org/model", "--revision=main", f"--dest={dest}", "--ignore-pattern=*.h5")
    first = run_downloader(endpoint, tmp_path, *args, token="hf_secret")
    assert first.returncode == 0, first.stderr
    assert (dest / "config.json").read_bytes() == HUB_FILES["config.json"]
    assert (dest / "model.safetensors").read_bytes() == HUB_FILES["model.safetensors"]
    assert not (dest / "tf_model.h5").exists()
    assert sorted(handler.served) == ["config.json", "model.safetensors"]
    assert "Bearer hf_secret" in handler.authorization

    again = run_downloader(endpoint, tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert sorted(handler.served) == ["config.json", "model.safetensors"], "a cached file is not downloaded again"


def test_the_downloader_says_why_it_cannot_download(hub, tmp_path):
    _, endpoint = hub
    missing = run_downloader(endpoint, tmp_path, "--repo-id=org/absent", "--revision=main", f"--dest={tmp_path / 'a'}")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == ("downloader: org/absent does not exist on the Hub, or is private "
                                                       "and HF_TOKEN is not set")
    gated = run_downloader(endpoint, tmp_path, "--repo-id=gated/model", "--revision=main", f"--dest={tmp_path / 'b'}")
    assert gated.returncode == 1 and "is gated" in gated.stderr.strip().splitlines()[-1]
