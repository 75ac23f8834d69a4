{{/*
Names, labels, the agent's environment, and the checks values.schema.json cannot make.

Objects are named as Helm's starter chart names them: the release name when it holds the chart's
name, else <release>-shipyard-agent. Installed as the release "shipyard-agent", every name is the
bootstrap's (renderer/bootstrap.py AGENT_NAME). Labels are Helm's standard labels (Helm, "Labels
and Annotations"), and the cluster's, as the bootstrap labels its objects.
*/}}

{{- define "shipyard-agent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shipyard-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "shipyard-agent.labels" -}}
{{ include "shipyard-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
shipyard.dev/cluster: {{ .Values.cluster | quote }}
{{- end -}}

{{/* The agent image of this chart's release unless the values pin another; a digest pins it exactly. */}}
{{- define "shipyard-agent.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Where the token Secret is mounted (renderer/bootstrap.py AGENT_TOKEN_DIR). */}}
{{- define "shipyard-agent.tokenDir" -}}
/var/run/secrets/shipyard
{{- end -}}

{{/*
The agent's environment (agent/settings.py), as renderer/bootstrap.py agent_env renders it: who it
is, where it reports, what it follows. SHIPYARD_NAMESPACES names the workspace namespaces exactly,
so the agent watches each of them and the namespaced Roles suffice; with no workspace it names only
the ArgoCD namespace, where the agent never follows workloads (an empty list would mean every
namespace, and cluster-wide watches). Then the log level and the settings the values set, and only
those: a setting left out keeps the agent's default.
*/}}
{{- define "shipyard-agent.env" -}}
- name: SHIPYARD_URL
  value: {{ .Values.controlPlane.url | quote }}
- name: SHIPYARD_TENANT
  value: {{ .Values.tenant | quote }}
- name: SHIPYARD_CLUSTER
  value: {{ .Values.cluster | quote }}
- name: SHIPYARD_AGENT_TOKEN_FILE
  value: {{ printf "%s/token" (include "shipyard-agent.tokenDir" .) | quote }}
- name: ARGOCD_NAMESPACE
  value: {{ .Values.argocdNamespace | quote }}
- name: SHIPYARD_NAMESPACES
  value: {{ .Values.workspaces | sortAlpha | join "," | default .Values.argocdNamespace | quote }}
- name: SHIPYARD_METRICS_PORT
  value: {{ .Values.metrics.port | int | quote }}
{{- with .Values.logLevel }}
- name: SHIPYARD_LOG_LEVEL
  value: {{ . | quote }}
{{- end }}
{{- $variables := dict
    "namespacesDeny" "SHIPYARD_NAMESPACES_DENY"
    "watchTimeout" "SHIPYARD_WATCH_TIMEOUT"
    "listPageSize" "SHIPYARD_LIST_PAGE_SIZE"
    "heartbeatInterval" "SHIPYARD_HEARTBEAT_INTERVAL"
    "batchInterval" "SHIPYARD_BATCH_INTERVAL"
    "backoffBase" "SHIPYARD_BACKOFF_BASE"
    "backoffMax" "SHIPYARD_BACKOFF_MAX"
    "unauthorizedBackoff" "SHIPYARD_UNAUTHORIZED_BACKOFF"
    "commandWait" "SHIPYARD_COMMAND_WAIT" }}
{{- range $setting, $value := .Values.settings }}
- name: {{ get $variables $setting }}
  {{- if kindIs "slice" $value }}
  value: {{ join "," $value | quote }}
  {{- else if and (kindIs "float64" $value) (eq $value (floor $value)) }}
  {{- /* a whole number read from a values file is a float64, which prints as 1e+06 */}}
  value: {{ $value | int64 | quote }}
  {{- else }}
  value: {{ $value | toString | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
What the schema cannot check, refused before anything is installed: the agent's namespace (the
release's) is its own, as the profile's agent.namespace must be (renderer/profiles.py); a
workspace is neither that namespace nor ArgoCD's (render_agent refuses the first, the control
plane reserves both) nor a kube-* namespace, where the agent never follows workloads; extraEnv
does not set what the chart sets.
*/}}
{{- define "shipyard-agent.checks" -}}
{{- $namespace := .Release.Namespace -}}
{{- if or (has $namespace (list "default" .Values.argocdNamespace)) (hasPrefix "kube-" $namespace) -}}
{{- fail (printf "the agent needs a namespace of its own, not %q; install it with -n shipyard-system --create-namespace" $namespace) -}}
{{- end -}}
{{- range .Values.workspaces -}}
{{- if eq . $namespace -}}
{{- fail (printf "workspaces: %q is the agent's own namespace (the release's); a workspace is a namespace of its own" .) -}}
{{- end -}}
{{- if eq . $.Values.argocdNamespace -}}
{{- fail (printf "workspaces: %q is the ArgoCD namespace (argocdNamespace); a workspace is a namespace of its own" .) -}}
{{- end -}}
{{- if hasPrefix "kube-" . -}}
{{- fail (printf "workspaces: %q is a kube-* namespace, where the agent never follows workloads" .) -}}
{{- end -}}
{{- end -}}
{{- $set := list -}}
{{- range include "shipyard-agent.env" . | fromYamlArray -}}
{{- $set = append $set .name -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if has .name $set -}}
{{- fail (printf "extraEnv: %s is set by the chart; set it through its value (values.yaml names each one)" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
