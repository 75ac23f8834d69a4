#!/usr/bin/env bash
# Builds Shipyard's images from this checkout, tagged with the project's version:
#
#   images/build.sh [control-plane|agent|all] [-- BUILD FLAGS...]
#
#   ghcr.io/shipyard-dev/shipyard:<version>        images/shipyard.Containerfile
#   ghcr.io/shipyard-dev/shipyard-agent:<version>  images/shipyard-agent.Containerfile (the agent image cluster
#                                                  profiles default to)
#
# BUILDER     the build command with its global flags: docker, podman or buildah (default: the first found)
# REGISTRY    where the tags point (ghcr.io/shipyard-dev)
# BUILD_BASE  the stage that makes the virtual environment (debian:12-slim)
# BASE        the image it runs on (gcr.io/distroless/python3-debian12:nonroot)
#
# Flags after -- go to each build as they are, e.g. --network host, or --volume to mount a pip.conf at
# /etc/pip.conf for a private package index.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
if [ $# -gt 0 ]; then shift; fi
if [ "${1:-}" = "--" ]; then shift; fi

case "$what" in
  control-plane|agent|all) ;;
  *) echo "usage: images/build.sh [control-plane|agent|all] [-- BUILD FLAGS...]" >&2; exit 2 ;;
esac

builder=${BUILDER:-}
if [ -z "$builder" ]; then
  for candidate in docker podman buildah; do
    if command -v "$candidate" >/dev/null; then builder=$candidate; break; fi
  done
fi
if [ -z "$builder" ]; then
  echo "images/build.sh: no docker, podman or buildah found; install one, or name it in BUILDER" >&2
  exit 1
fi

registry=${REGISTRY:-ghcr.io/shipyard-dev}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
bases=()
if [ -n "${BUILD_BASE:-}" ]; then bases+=(--build-arg "BUILD_BASE=$BUILD_BASE"); fi
if [ -n "${BASE:-}" ]; then bases+=(--build-arg "BASE=$BASE"); fi

build() {  # build NAME CONTAINERFILE [FLAGS...]
  local name=$1 containerfile=$2
  shift 2
  echo "building $registry/$name:$version from images/$containerfile" >&2
  # $builder is a command with its flags: split on purpose
  # shellcheck disable=SC2086
  $builder build -f "$root/images/$containerfile" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" "${bases[@]}" \
    -t "$registry/$name:$version" "$@" "$root"
}

if [ "$what" = control-plane ] || [ "$what" = all ]; then build shipyard shipyard.Containerfile "$@"; fi
if [ "$what" = agent ] || [ "$what" = all ]; then build shipyard-agent shipyard-agent.Containerfile "$@"; fi
