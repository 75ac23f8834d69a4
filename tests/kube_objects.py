"""Kubernetes objects at the size a real cluster serves them, for tests and benchmarks.

A real API server sends every object with ``metadata.managedFields`` (Server
Side Apply's record of which manager owns which field, kept on every object
since Kubernetes 1.18: "Server-Side Apply", Field management), and controllers
fill ``status``; an agent that is measured on bare objects is measured on a
third of what it parses. These builders give the shapes and sizes seen on
live clusters (compact JSON, as the API server encodes it):

=====================  ========  ==========================================================
object                 size      where the bytes are
=====================  ========  ==========================================================
Argo CD Application    ~13 KB    status.resources, status.history, operationState.syncResult,
                                 managedFields of argocd-server and the application-controller
Deployment             ~7 KB     pod template (env, probes, resources), status, managedFields
                                 of argocd-controller (Apply) and kube-controller-manager
Pod                    ~7.3 KB   spec (containers, projected service-account volume,
                                 tolerations), status.containerStatuses, managedFields of
                                 kube-controller-manager and kubelet
CRD                    50-500 KB spec.versions[].schema.openAPIV3Schema (argo's are ~500 KB)
=====================  ========  ==========================================================

Every workload carries Shipyard's labels, so the agent follows it.
"""

from __future__ import annotations

import hashlib
import json

from contract.labels import APP_LABEL, MANAGED_BY, WORKSPACE_LABEL

STAMP = "2026-11-29T00:00:00Z"


def size_of(obj: dict) -> int:
    """Bytes of the object as the API server encodes it (compact JSON)."""
    return len(json.dumps(obj, separators=(",", ":")))


def managed_fields(manager: str, operation: str, api_version: str, fields: dict,
                   subresource: str | None = None) -> dict:
    """One metadata.managedFields entry ("Server-Side Apply", Field management): FieldsV1 is a tree of
    ``f:<field>`` keys with ``{}`` leaves, ``k:{...}`` for list items keyed by their merge key."""
    entry = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": STAMP,
             "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        entry["subresource"] = subresource
    return entry


def _fields_of(value) -> dict:
    """The FieldsV1 tree that owns every field of ``value`` (lists of maps by their "name" key)."""
    if not isinstance(value, dict):
        return {}
    tree = {}
    for key, item in value.items():
        if isinstance(item, dict):
            tree[f"f:{key}"] = {".": {}, **_fields_of(item)} if item else {}
        elif isinstance(item, list) and item and all(isinstance(i, dict) and "name" in i for i in item):
            tree[f"f:{key}"] = {f'k:{{"name":"{i["name"]}"}}': {".": {}, **_fields_of(i)} for i in item}
        else:
            tree[f"f:{key}"] = {}
    return tree


def _labels(workspace: str, app: str) -> dict:
    return {**MANAGED_BY, APP_LABEL: app, WORKSPACE_LABEL: workspace,
            "app.kubernetes.io/name": app, "app.kubernetes.io/instance": f"{workspace}-{app}"}


def _sha(*parts) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def _container(app: str, index: int) -> dict:
    return {
        "name": app if index == 0 else f"{app}-sidecar",
        "image": f"registry.example.com/{app}:{_sha(app, index)[:12]}",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 8080 + index, "protocol": "TCP"}],
        "env": [{"name": f"{app.upper().replace('-', '_')}_SETTING_{n}", "value": f"value-{n}-{_sha(app, n)[:8]}"}
                for n in range(10)] + [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                          "initialDelaySeconds": 10, "timeoutSeconds": 1, "periodSeconds": 10,
                          "successThreshold": 1, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                           "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }


def realistic_deployment(i: int, workspace: str | None = None, replicas: int = 3) -> dict:
    """A Deployment of app ``app<i>`` in ``ws<i % 50>`` (or ``workspace``), ~7 KB, rolled out."""
    workspace = workspace or f"ws{i % 50}"
    app = f"app{i}"
    labels = _labels(workspace, app)
    template = {"metadata": {"labels": labels, "annotations": {"kubectl.kubernetes.io/restartedAt": STAMP}},
                "spec": {"containers": [_container(app, 0)], "restartPolicy": "Always",
                         "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                         "serviceAccountName": app, "securityContext": {"fsGroup": 1000},
                         "schedulerName": "default-scheduler",
                         "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                             {"weight": 100, "podAffinityTerm": {"topologyKey": key, "labelSelector": {
                                 "matchLabels": {APP_LABEL: app, WORKSPACE_LABEL: workspace}}}}
                             for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")]}}}}
    spec = {"replicas": replicas, "selector": {"matchLabels": {APP_LABEL: app, WORKSPACE_LABEL: workspace}},
            "template": template, "strategy": {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}
    status = {"observedGeneration": 4, "replicas": replicas, "updatedReplicas": replicas,
              "readyReplicas": replicas, "availableReplicas": replicas, "conditions": [
                  {"type": "Available", "status": "True", "lastUpdateTime": STAMP, "lastTransitionTime": STAMP,
                   "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                  {"type": "Progressing", "status": "True", "lastUpdateTime": STAMP, "lastTransitionTime": STAMP,
                   "reason": "NewReplicaSetAvailable",
                   "message": f'ReplicaSet "{app}-{_sha(app)[:10]}" has successfully progressed.'}]}
    metadata = {"name": app, "namespace": workspace, "labels": labels, "generation": 4, "annotations": {
        "deployment.kubernetes.io/revision": "4",
        "argocd.argoproj.io/tracking-id": f"{workspace}.{app}:apps/Deployment:{workspace}/{app}"}}
    metadata["managedFields"] = [
        managed_fields("argocd-controller", "Apply", "apps/v1", {"f:metadata": _fields_of(
            {"labels": labels, "annotations": {"argocd.argoproj.io/tracking-id": ""}}), "f:spec": _fields_of(spec)}),
        managed_fields("kube-controller-manager", "Update", "apps/v1",
                       {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
                        "f:status": _fields_of(status)}, subresource="status"),
    ]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec, "status": status}


def realistic_pod(i: int, replica: int = 0, workspace: str | None = None) -> dict:
    """Replica ``replica`` of app ``app<i>``'s Deployment, ~7.3 KB, running and ready."""
    workspace = workspace or f"ws{i % 50}"
    app = f"app{i}"
    hash_ = _sha(app)[:10]
    name = f"{app}-{hash_}-{_sha(app, replica)[:5]}"
    labels = {**_labels(workspace, app), "pod-template-hash": hash_}
    container = _container(app, 0)
    container["volumeMounts"] = [{"name": "kube-api-access", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    spec = {"containers": [container], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "serviceAccountName": app, "serviceAccount": app,
            "nodeName": f"node-{i % 40}.eu-west-1.compute.internal", "securityContext": {"fsGroup": 1000},
            "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": f"node.kubernetes.io/{t}", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300} for t in ("not-ready", "unreachable")],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]}
    status = {"phase": "Running", "hostIP": f"10.0.{i % 40}.10", "podIP": f"10.1.{i % 250}.{replica + 10}",
              "podIPs": [{"ip": f"10.1.{i % 250}.{replica + 10}"}], "startTime": STAMP, "qosClass": "Burstable",
              "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": STAMP}
                             for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                       "PodScheduled")],
              "containerStatuses": [{"name": app, "state": {"running": {"startedAt": STAMP}}, "lastState": {},
                                     "ready": True, "restartCount": 0, "started": True,
                                     "image": container["image"], "imageID": f"{container['image']}@sha256:"
                                     + hashlib.sha256(app.encode()).hexdigest(),
                                     "containerID": "containerd://" + hashlib.sha256(name.encode()).hexdigest()}]}
    metadata = {"name": name, "generateName": f"{app}-{hash_}-", "namespace": workspace, "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-{hash_}",
                                     "uid": _sha("rs", app)[:36], "controller": True, "blockOwnerDeletion": True}],
                "annotations": {"kubectl.kubernetes.io/restartedAt": STAMP}}
    metadata["managedFields"] = [
        managed_fields("kube-controller-manager", "Update", "v1", {"f:metadata": _fields_of(
            {"generateName": "", "labels": labels, "ownerReferences": {}}), "f:spec": _fields_of(spec)}),
        managed_fields("kubelet", "Update", "v1", {"f:status": _fields_of(status)}, subresource="status"),
    ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


_KINDS = ("Deployment", "Service", "ConfigMap", "ServiceAccount", "Secret", "HorizontalPodAutoscaler",
          "PodDisruptionBudget", "NetworkPolicy", "Role", "RoleBinding", "Ingress", "ServiceMonitor")


def realistic_application(i: int, revision: str | None = None, health: str = "Healthy",
                          workspace: str | None = None) -> dict:
    """Argo CD's Application ``<ws>.app<i>`` in argocd, ~13 KB: synced, with its resource tree and history."""
    workspace = workspace or f"ws{i % 50}"
    app = f"app{i}"
    revision = revision or _sha("rev", i)
    groups = {"Deployment": "apps", "HorizontalPodAutoscaler": "autoscaling", "PodDisruptionBudget": "policy",
              "NetworkPolicy": "networking.k8s.io", "Role": "rbac.authorization.k8s.io",
              "RoleBinding": "rbac.authorization.k8s.io", "Ingress": "networking.k8s.io",
              "ServiceMonitor": "monitoring.coreos.com"}
    resources = []
    for kind in _KINDS:
        entry = {"kind": kind, "namespace": workspace, "name": app if kind == "Deployment" else f"{app}-{kind.lower()}",
                 "version": "v1", "status": "Synced"}
        if kind in groups:
            entry["group"] = groups[kind]
        if kind in ("Deployment", "Service", "Ingress", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
            entry["health"] = {"status": health}
        resources.append(entry)
    source = {"repoURL": "https://shipyard.example/git/acme/prod.git", "path": f"workspaces/{workspace}/{app}",
              "targetRevision": "main"}
    spec = {"project": "shipyard", "source": source,
            "destination": {"server": "https://kubernetes.default.svc", "namespace": workspace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True},
                           "syncOptions": ["CreateNamespace=false", "ServerSideApply=true"],
                           "retry": {"limit": 5, "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"}}}}
    sync_result = {"revision": revision, "source": source, "resources": [
        {"group": r.get("group", ""), "version": "v1", "kind": r["kind"], "namespace": workspace, "name": r["name"],
         "status": "Synced", "message": f"{r['kind'].lower()}/{r['name']} serverside-applied",
         "hookPhase": "Running", "syncPhase": "Sync"} for r in resources]}
    status = {
        "sync": {"status": "Synced", "revision": revision, "comparedTo": {
            "source": source, "destination": spec["destination"]}},
        "health": {"status": health, "lastTransitionTime": STAMP},
        "resources": resources,
        "history": [{"id": n, "revision": _sha("rev", i, n), "deployedAt": STAMP, "deployStartedAt": STAMP,
                     "source": source, "initiatedBy": {"automated": True}} for n in range(11)],
        "operationState": {"phase": "Succeeded", "message": "successfully synced (all tasks run)",
                           "startedAt": STAMP, "finishedAt": STAMP, "syncResult": sync_result,
                           "operation": {"sync": {"revision": revision, "syncOptions": spec["syncPolicy"]["syncOptions"]},
                                         "initiatedBy": {"automated": True},
                                         "retry": spec["syncPolicy"]["retry"]}},
        "reconciledAt": STAMP, "sourceType": "Directory",
        "summary": {"images": [f"registry.example.com/{app}:{_sha(app, 0)[:12]}"]},
        "controllerNamespace": "argocd",
    }
    labels = {**MANAGED_BY, APP_LABEL: app, WORKSPACE_LABEL: workspace}
    annotations = {"argocd.argoproj.io/manifest-generate-paths": f"/workspaces/{workspace}/{app}"}
    metadata = {"name": f"{workspace}.{app}", "namespace": "argocd", "labels": labels, "annotations": annotations,
                "finalizers": ["resources-finalizer.argocd.argoproj.io"]}
    metadata["managedFields"] = [
        managed_fields("argocd-server", "Update", "argoproj.io/v1alpha1", {"f:metadata": _fields_of(
            {"labels": labels, "annotations": annotations}), "f:spec": _fields_of(spec)}),
        managed_fields("argocd-application-controller", "Update", "argoproj.io/v1alpha1",
                       {"f:status": _fields_of({k: v for k, v in status.items()
                                                if k not in ("resources", "history")}),
                        "f:operation": {}}),
    ]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": metadata, "spec": spec,
            "status": status}


def realistic_crd(i: int, size_kb: int = 200, group: str = "example.com") -> dict:
    """CRD ``things<i>.<group>`` whose openAPIV3Schema makes it about ``size_kb`` KB (real ones run from
    50 KB to over 500 KB: Argo Workflows' embed whole pod specs)."""
    plural = f"things{i}"
    properties: dict = {}
    n = 0
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"{plural}.{group}", "labels": {"app.kubernetes.io/part-of": "example"},
                        "annotations": {"controller-gen.kubebuilder.io/version": "v0.16.1"}},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": plural, "singular": f"thing{i}", "kind": f"Thing{i}",
                              "listKind": f"Thing{i}List"},
                    "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                  "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                      "spec": {"type": "object", "properties": properties}}}}}]},
           "status": {"acceptedNames": {"plural": plural, "kind": f"Thing{i}"}, "storedVersions": ["v1alpha1"],
                      "conditions": [{"type": t, "status": "True", "lastTransitionTime": STAMP, "reason": r}
                                     for t, r in (("NamesAccepted", "NoConflicts"),
                                                  ("Established", "InitialNamesAccepted"))]}}
    target, size = size_kb * 1024, size_of(crd)
    while size < target:  # each field's bytes counted once, not the whole CRD encoded again
        name = f"field{n}"
        properties[name] = {
            "description": f"{name} of a Thing: what it sets, which values it takes and what happens by "
                           f"default; generated from the Go type's doc comment as controller-gen does.",
            "type": "object", "properties": {
                "name": {"type": "string", "maxLength": 253},
                "value": {"type": "string", "description": "The value, when set literally."},
                "items": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "atomic"}},
            "required": ["name"]}
        size += len(json.dumps({name: properties[name]}, separators=(",", ":"))) - 1  # less the braces, plus a comma
        n += 1
    return crd


__all__ = ["managed_fields", "realistic_application", "realistic_deployment", "realistic_pod", "realistic_crd",
           "size_of"]
