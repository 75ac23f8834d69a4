{{/*
Names, labels and the decisions several templates share. User values enter the manifests only
through toJson or toYaml, never spliced into YAML text.
*/}}

{{- define "shipyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Helm's recommended labels (Helm, "Labels and Annotations") */}}
{{- define "shipyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | toJson }}
{{ include "shipyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | toJson }}
app.kubernetes.io/managed-by: {{ .Release.Service | toJson }}
{{- end -}}

{{- define "shipyard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name | toJson }}
app.kubernetes.io/instance: {{ .Release.Name | toJson }}
{{- end -}}

{{/* The server's pods, apart from the migration Job's */}}
{{- define "shipyard.serverSelector" -}}
{{ include "shipyard.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "shipyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shipyard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "shipyard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The host part of publicUrl, the default host of the Ingress and the HTTPRoute */}}
{{- define "shipyard.publicHost" -}}
{{- (urlParse .Values.publicUrl).hostname -}}
{{- end -}}

{{- define "shipyard.dataClaimName" -}}
{{- default (printf "%s-data" (include "shipyard.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/*
"true" when every pod sees the same data volume: a ReadWriteMany claim. Otherwise each pod has
its own repositories (an emptyDir), or the pods could not share the claim anyway (ReadWriteOnce
attaches to one node, ReadWriteOncePod to one pod).
*/}}
{{- define "shipyard.sharedRepositories" -}}
{{- if and .Values.persistence.enabled (eq .Values.persistence.accessMode "ReadWriteMany") -}}true{{- end -}}
{{- end -}}

{{/*
Recreate when two pods must never run at once: SQLite wants a single server, and a ReadWriteOnce
or ReadWriteOncePod claim cannot be mounted by the new pod while the old one holds it (Kubernetes,
"Deployments": Recreate kills all existing pods before new ones are created). Otherwise a
rolling update that never goes below the wanted number of ready pods.
*/}}
{{- define "shipyard.strategy" -}}
{{- if or (not .Values.database.external) (and .Values.persistence.enabled (not (include "shipyard.sharedRepositories" .))) -}}
type: Recreate
{{- else -}}
type: RollingUpdate
rollingUpdate:
  maxSurge: 1
  maxUnavailable: 0
{{- end -}}
{{- end -}}

{{- define "shipyard.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret.existingSecret | toJson }}
      key: {{ .secret.key | toJson }}
{{- end -}}

{{/*
The combinations that would lose data or cannot work, refused at render time with what to change.
Included by the Deployment, so `helm template`, `helm install` and `helm upgrade` all stop here.
*/}}
{{- define "shipyard.refusals" -}}
{{- $values := .Values -}}
{{- $several := gt (int $values.replicaCount) 1 -}}
{{- if not $values.publicUrl -}}
{{- fail "publicUrl is required: the URL people, agents and Argo CD reach Shipyard at, e.g. --set publicUrl=https://shipyard.example.com" -}}
{{- end -}}
{{- if and $values.database.external (not $values.database.existingSecret) -}}
{{- fail "database.external=true needs database.existingSecret: a Secret, made before installing, whose key database.key holds the PostgreSQL URL (postgresql+psycopg://user:password@host/db)" -}}
{{- end -}}
{{- if and $several (not $values.database.external) -}}
{{- fail (printf "replicaCount=%d needs PostgreSQL: SQLite serves one pod only. Set database.external=true with database.existingSecret, or replicaCount=1" (int $values.replicaCount)) -}}
{{- end -}}
{{- if and $several (not (include "shipyard.sharedRepositories" .)) (not $values.repositories.remoteRequired) -}}
{{- fail (printf "replicaCount=%d would split commits over pod-local repositories (%s): each pod would commit to its own copy and Argo CD would read only one. Set persistence.accessMode=ReadWriteMany (a volume every pod mounts), or repositories.remoteRequired=true (every commit pushed to an external git host, which Argo CD reads)" (int $values.replicaCount) (ternary (printf "persistence.accessMode=%s" $values.persistence.accessMode) "persistence.enabled=false" $values.persistence.enabled)) -}}
{{- end -}}
{{- if and $several $values.persistence.enabled (not (include "shipyard.sharedRepositories" .)) -}}
{{- fail (printf "replicaCount=%d cannot share one %s volume: ReadWriteOnce attaches to a single node and ReadWriteOncePod to a single pod. With repositories.remoteRequired=true set persistence.enabled=false (each pod keeps its working repositories in an emptyDir), or use persistence.accessMode=ReadWriteMany" (int $values.replicaCount) $values.persistence.accessMode) -}}
{{- end -}}
{{- if and (not $values.persistence.enabled) (not (and $values.database.external $values.repositories.remoteRequired)) -}}
{{- fail "persistence.enabled=false keeps the data in an emptyDir that a restart empties: the SQLite database, or commits no external git host holds, would be lost. Only with database.external=true and repositories.remoteRequired=true" -}}
{{- end -}}
{{- if and (or $several (not $values.persistence.enabled)) (not $values.secretKey.existingSecret) -}}
{{- fail "secretKey.existingSecret is required with several replicas or without a persistent volume: a generated key is kept only in one pod's data volume, so sessions and the sealed credentials of git remotes would break between pods and restarts" -}}
{{- end -}}
{{- if and $values.ingress.enabled $values.httpRoute.enabled -}}
{{- fail "ingress.enabled and httpRoute.enabled are both set: pick one way in" -}}
{{- end -}}
{{- if and $values.httpRoute.enabled (not $values.httpRoute.parentRefs) -}}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs: the Gateway(s) the route attaches to, e.g. [{name: public, namespace: gateways}]" -}}
{{- end -}}
{{- if and $values.oidc.issuer (not (and $values.oidc.clientId $values.oidc.clientSecret.existingSecret)) -}}
{{- fail "oidc.issuer needs oidc.clientId and oidc.clientSecret.existingSecret (a Secret whose key oidc.clientSecret.key holds the client secret)" -}}
{{- end -}}
{{- if and $values.metrics.serviceMonitor.enabled (not $values.metrics.token.existingSecret) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.token.existingSecret: /metrics answers only a bearer token, which Prometheus reads from that Secret" -}}
{{- end -}}
{{- end -}}
