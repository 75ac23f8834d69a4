#!/usr/bin/env bash
# Shipyard on a local kind cluster, from this checkout: the steps of docs/quickstart-kind.md, run in order.
#
#   docs/quickstart-kind.sh          (needs Docker, kind, kubectl, helm, git and Python 3.11+)
#
#   1. build the control plane's and the agent's images (images/*.Containerfile)
#   2. create the kind cluster "shipyard" and load both images into it
#   3. install Argo CD (a pinned release) and wait for it
#   4. create the control plane's secret key and install charts/shipyard with the local image
#   5. reach the API through a port-forward; make the first admin and log in with the shipyard command
#   6. register the cluster (docs/quickstart/kind.yaml) and run the install steps it prints: Argo CD's
#      repository Secret, the root Application, the agent's token
#   7. create the workspace, deploy docs/quickstart/specs/, wait for Healthy, run the job
#
# Run again, it reuses what exists (the cluster, Argo CD, the secret key, the registered cluster, the
# login, the workspace; the same specs make no new version), rolls the control plane onto a new build,
# and makes new tokens for the cluster. Nothing here touches another kubectl context: every kubectl and
# helm call names the kind cluster's. tests/test_quickstart.py holds what it runs to the code: the chart
# values render, the profile loads and bootstraps, the specs render, every shipyard command and option
# exists, the image tags match the charts and the profile, and steps 5 to 7 run against a control plane
# on loopback, a simulated cluster behind kubectl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICKSTART="$ROOT/docs/quickstart"

KIND_CLUSTER=shipyard                  # the kind cluster, and its kubectl context kind-shipyard
KUBE_CONTEXT="kind-$KIND_CLUSTER"
ARGOCD_VERSION=v3.2.5                  # Argo CD's install.yaml of this release tag
ARGOCD_NAMESPACE=argocd
RECONCILIATION=20s                     # Argo CD looks for new commits this often (its default: 180s)
NAMESPACE=shipyard                     # the control plane's namespace and Helm release
RELEASE=shipyard
SECRET_KEY_SECRET=shipyard-secret-key  # docs/quickstart/values.yaml: secretKey.existingSecret
CLUSTER=kind                           # the cluster's name in Shipyard: docs/quickstart/kind.yaml's name
PROFILE="$QUICKSTART/kind.yaml"
REPO_URL=http://shipyard.shipyard.svc/git/default/kind.git   # the profile's git.repo_url, as Argo CD reads it
GIT_PATH=/git/default/kind.git         # the same repository through the port-forward
AGENT_NAMESPACE=shipyard-system        # the profile's agent namespace and token Secret (their defaults)
AGENT_TOKEN_SECRET=shipyard-agent-token
AGENT_DEPLOYMENT=shipyard-agent
WORKSPACE=quickstart                   # the workspace of docs/quickstart/specs/
ADMIN="admin"
CLI_CONTEXT=kind-quickstart            # the context the command line stores (`shipyard contexts`)
LOCAL_PORT=${SHIPYARD_QUICKSTART_PORT:-18080}
VENV=${SHIPYARD_VENV:-$ROOT/.venv}     # where Shipyard's command line is, or is installed
IMAGE_REPOSITORY=ghcr.io/shipyard-dev/shipyard
AGENT_IMAGE_REPOSITORY=ghcr.io/shipyard-dev/shipyard-agent

step() { printf '\n==> %s\n' "$*" >&2; }
say() { printf '    %s\n' "$*" >&2; }
fail() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

kube() { kubectl --context "$KUBE_CONTEXT" "$@"; }
shipyard() { "$VENV/bin/shipyard" "$@"; }

# wait_until SECONDS WHAT COMMAND...: run COMMAND every 2 s until it succeeds; fail naming WHAT after SECONDS.
wait_until() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what did not happen within ${seconds}s (docs/quickstart-kind.md, Troubleshooting)"
    sleep 2
  done
}

# json_get KEY < JSON: one top-level string of a JSON document.
json_get() {
  python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

healthy() {
  python3 -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=3).status == 200 else 1)
except OSError:
    sys.exit(1)' "$1/healthz"
}

agent_online() {
  [[ "$(shipyard clusters show "$CLUSTER" --output json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["status"]["connectivity"])')" == online ]]
}

workspace_exists() {
  shipyard workspaces --cluster "$CLUSTER" --output json |
    python3 -c 'import json, sys; sys.exit(sys.argv[1] not in {w["name"] for w in json.load(sys.stdin)["workspaces"]})' \
      "$WORKSPACE"
}

check_prerequisites() {
  step "Checking the prerequisites"
  local tool missing=()
  for tool in docker kind kubectl helm git python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) || fail "missing: ${missing[*]} (docs/quickstart-kind.md, What you need)"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    fail "python3 is $(python3 --version 2>&1); Shipyard's command line needs Python 3.11 or later"
  docker info >/dev/null 2>&1 || fail "docker cannot reach its daemon: start Docker (or add yourself to the docker group)"
  say "docker, kind $(kind version | cut -d' ' -f2), kubectl, helm $(helm version --short), git, $(python3 --version)"
}

install_command_line() {
  if [[ -x "$VENV/bin/shipyard" ]]; then
    return
  fi
  step "Installing Shipyard's command line into $VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv failed (Debian and Ubuntu: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT"
}

build_images() {
  step "1. Building $IMAGE and $AGENT_IMAGE"
  # tagged <registry>/shipyard[-agent]:<version>, the project's version: $IMAGE and $AGENT_IMAGE
  BUILDER=docker REGISTRY="${IMAGE_REPOSITORY%/*}" "$ROOT/images/build.sh" all
}

create_cluster() {
  step "2. Creating the kind cluster $KIND_CLUSTER and loading the images into it"
  if kind get clusters | grep -qx "$KIND_CLUSTER"; then
    say "it exists already"
  else
    kind create cluster --name "$KIND_CLUSTER" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
  fi
  kind load docker-image --name "$KIND_CLUSTER" "$IMAGE" "$AGENT_IMAGE"
}

install_argocd() {
  step "3. Installing Argo CD $ARGOCD_VERSION"
  kube create namespace "$ARGOCD_NAMESPACE" --dry-run=client -o yaml | kube apply -f -
  # Server-side: some of Argo CD's CRDs are too large for a client-side apply (Argo CD, "Getting Started").
  kube apply -n "$ARGOCD_NAMESPACE" --server-side --force-conflicts \
    -f "https://raw.githubusercontent.com/argoproj/argo-cd/$ARGOCD_VERSION/manifests/install.yaml"
  # Argo CD polls repositories every timeout.reconciliation (argocd-cm); its controller reads the setting
  # when it starts, so a change restarts it.
  if [[ "$(kube -n "$ARGOCD_NAMESPACE" get configmap argocd-cm -o 'jsonpath={.data.timeout\.reconciliation}')" != "$RECONCILIATION" ]]; then
    say "polling the cluster repository every $RECONCILIATION, so a deploy reaches the cluster within that"
    kube -n "$ARGOCD_NAMESPACE" patch configmap argocd-cm --type merge \
      -p "{\"data\": {\"timeout.reconciliation\": \"$RECONCILIATION\"}}"
    kube -n "$ARGOCD_NAMESPACE" rollout restart statefulset/argocd-application-controller
  fi
  kube -n "$ARGOCD_NAMESPACE" rollout status statefulset/argocd-application-controller --timeout=300s
  kube -n "$ARGOCD_NAMESPACE" wait --for=condition=Available deployment --all --timeout=300s
}

install_control_plane() {
  step "4. Installing the control plane (charts/shipyard) into the namespace $NAMESPACE"
  kube create namespace "$NAMESPACE" --dry-run=client -o yaml | kube apply -f -
  if kube -n "$NAMESPACE" get secret "$SECRET_KEY_SECRET" >/dev/null 2>&1; then
    say "secret key: the Secret $SECRET_KEY_SECRET exists already, kept (a new key would end every session)"
  else
    say "secret key: generated into the Secret $SECRET_KEY_SECRET"
    python3 -c 'import secrets; print(secrets.token_urlsafe(48), end="")' >"$WORK/secret-key"
    kube -n "$NAMESPACE" create secret generic "$SECRET_KEY_SECRET" --from-file="secret-key=$WORK/secret-key"
  fi
  # The image's ID on the pod template: run again after a new build (same tag), the pod rolls onto it, as
  # a checksum annotation rolls pods on a change of config (Helm, "Automatically Roll Deployments").
  local image_id
  image_id=$(docker image inspect --format '{{.Id}}' "$IMAGE")
  helm --kube-context "$KUBE_CONTEXT" upgrade --install "$RELEASE" "$ROOT/charts/shipyard" \
    --namespace "$NAMESPACE" --values "$QUICKSTART/values.yaml" \
    --set-string "podAnnotations.shipyard\\.dev/image-id=$image_id" --wait --timeout 5m
}

reach_api() {
  step "5. Reaching the API at $URL (kubectl port-forward, stopped when this script ends)"
  kube -n "$NAMESPACE" port-forward "service/$RELEASE" "$LOCAL_PORT:80" >"$WORK/port-forward.log" 2>&1 &
  PORT_FORWARD=$!
  wait_until 60 "the port-forward to service/$RELEASE" healthy "$URL"
}

log_in() {
  export SHIPYARD_CONTEXT=$CLI_CONTEXT
  if shipyard clusters >/dev/null 2>&1; then
    say "logged in already: the stored context $CLI_CONTEXT"
    return
  fi
  # The admin's password is made inside the control plane's pod, next to its database: a new one for
  # the user admin, or, on the first run, the user itself.
  local said code
  if said=$(kube -n "$NAMESPACE" exec "deployment/$RELEASE" -- shipyard admin reset-password --username "$ADMIN" 2>"$WORK/admin.log"); then
    say "the user $ADMIN has a new password"
  else
    code=$?
    ((code == 4)) || fail "shipyard admin reset-password failed ($code): $(cat "$WORK/admin.log")"
    said=$(kube -n "$NAMESPACE" exec "deployment/$RELEASE" -- shipyard admin create-admin --username "$ADMIN")
    say "the first user, $ADMIN, a tenant-admin, is made"
  fi
  PASSWORD=${said##*: }
  printf '%s\n' "$PASSWORD" | shipyard login --url "$URL" --username "$ADMIN" --context "$CLI_CONTEXT"
}

register_cluster() {
  step "6. Registering the cluster $CLUSTER (docs/quickstart/kind.yaml) and running its install steps"
  local read_token agent_token registered
  if shipyard clusters show "$CLUSTER" >/dev/null 2>&1; then
    say "registered already: new read and agent tokens for it (Shipyard keeps only their hashes)"
    read_token=$(shipyard clusters rotate-token "$CLUSTER" --kind read --yes --output json | json_get token)
    agent_token=$(shipyard clusters rotate-token "$CLUSTER" --kind agent --yes --output json | json_get token)
  else
    registered=$(shipyard clusters register "$CLUSTER" --profile "$PROFILE" --output json)
    read_token=$(json_get read_token <<<"$registered")
    agent_token=$(json_get agent_token <<<"$registered")
  fi

  say "Argo CD's repository Secret: the read token for $REPO_URL"
  kube apply -f - <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: shipyard-repo-$CLUSTER
  namespace: $ARGOCD_NAMESPACE
  labels:
    argocd.argoproj.io/secret-type: repository
stringData:
  type: git
  url: "$REPO_URL"
  username: x
  password: "$read_token"
EOF

  say "the root Application, from the cluster repository as Argo CD reads it"
  rm -rf "${WORK:?}/$CLUSTER"
  git clone --quiet "http://x:$read_token@127.0.0.1:$LOCAL_PORT$GIT_PATH" "$WORK/$CLUSTER"
  kube apply -f "$WORK/$CLUSTER/bootstrap/root.yaml"

  say "the agent's token, once Argo CD has made its namespace $AGENT_NAMESPACE"
  wait_until 300 "Argo CD syncing bootstrap/ (the namespace $AGENT_NAMESPACE)" kube get namespace "$AGENT_NAMESPACE"
  kube apply -f - <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: $AGENT_TOKEN_SECRET
  namespace: $AGENT_NAMESPACE
stringData:
  token: "$agent_token"
EOF
  wait_until 300 "the agent's Deployment" kube -n "$AGENT_NAMESPACE" get "deployment/$AGENT_DEPLOYMENT"
  kube -n "$AGENT_NAMESPACE" rollout status "deployment/$AGENT_DEPLOYMENT" --timeout=300s
  wait_until 120 "the agent reporting to the control plane" agent_online
  shipyard clusters
}

deploy_examples() {
  step "7. Deploying docs/quickstart/specs/ into the workspace $CLUSTER:$WORKSPACE"
  if workspace_exists; then
    say "the workspace exists already"
  else
    shipyard workspaces create "$CLUSTER:$WORKSPACE" --environment dev
  fi
  shipyard deploy "$QUICKSTART/specs" --wait --timeout 10m
  shipyard run "$CLUSTER:$WORKSPACE/greet" --wait --timeout 5m
  shipyard apps --cluster "$CLUSTER"
}

print_next_steps() {
  step "Done. Shipyard runs in the kind cluster $KIND_CLUSTER."
  cat >&2 <<EOF

The dashboard and the API (the port-forward of this script has ended; start one again):
  kubectl --context $KUBE_CONTEXT -n $NAMESPACE port-forward service/$RELEASE $LOCAL_PORT:80
  open $URL and log in as $ADMIN with ${PASSWORD:-the password of the first run}
  a new password:  kubectl --context $KUBE_CONTEXT -n $NAMESPACE exec deployment/$RELEASE -- shipyard admin reset-password
  the command line, with that port-forward running:  $VENV/bin/shipyard apps --context $CLI_CONTEXT

The app (nginx, from docs/quickstart/specs/hello.yaml):
  kubectl --context $KUBE_CONTEXT -n $WORKSPACE port-forward service/hello 8081:80   then open http://127.0.0.1:8081

Delete everything:
  kind delete cluster --name $KIND_CLUSTER
  $VENV/bin/shipyard contexts delete $CLI_CONTEXT
EOF
}

clean_up() {
  if [[ -n "${PORT_FORWARD:-}" ]]; then
    kill "$PORT_FORWARD" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}

main() {
  check_prerequisites
  VERSION=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$ROOT/pyproject.toml")
  IMAGE="$IMAGE_REPOSITORY:$VERSION"
  AGENT_IMAGE="$AGENT_IMAGE_REPOSITORY:$VERSION"
  URL="http://127.0.0.1:$LOCAL_PORT"
  PASSWORD=
  PORT_FORWARD=
  WORK=$(mktemp -d)
  trap clean_up EXIT

  install_command_line
  build_images
  create_cluster
  install_argocd
  install_control_plane
  reach_api
  log_in
  register_cluster
  deploy_examples
  print_next_steps
}

# Sourced, the script only defines its steps: tests/test_quickstart.py runs the ones that talk to Shipyard
# against a control plane on loopback, with a simulated cluster behind kubectl.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
