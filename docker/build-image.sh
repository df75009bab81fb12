#!/usr/bin/env bash
# Build one ragtune image from the repository root (`make images` calls this).
#
#   docker/build-image.sh DOCKERFILE TAG [WHEELHOUSE]
#
# WHEELHOUSE (e.g. dist/wheelhouse from `make wheelhouse`): served read-only on this host's
# loopback for the length of the build and used as pip's only source (PIP_NO_INDEX=1), so the
# build needs no network and no CA bundle, and not one wheel lands in the build context or a
# layer (.dockerignore keeps dist/ out). Without it, pip inside the build uses the public indexes.
# BASE_IMAGE (env): the base for both stages; unset = the Dockerfile's default, and where that
# cannot be pulled (no registry reachable) the local Debian base from docker/base-image.sh.
set -euo pipefail

dockerfile="$1"
tag="$2"
wheelhouse="${3:-}"
LOCAL_BASE="${LOCAL_BASE:-ragtune-base:bookworm}"

args=(--file "$dockerfile" --tag "$tag")

base="${BASE_IMAGE:-}"
if [[ -z "$base" ]]; then
    default="$(sed -nE 's/^ARG BASE_IMAGE=(.+)$/\1/p' "$dockerfile" | head -n1)"
    if [[ -n "$default" ]] && ! docker image inspect "$default" >/dev/null 2>&1 \
        && ! docker pull --quiet "$default" >/dev/null 2>&1; then
        echo "cannot pull $default (no registry reachable?): building on the local base $LOCAL_BASE"
        "$(dirname "$0")/base-image.sh" "$LOCAL_BASE"
        base="$LOCAL_BASE"
    fi
fi
if [[ -n "$base" ]]; then
    args+=(--build-arg "BASE_IMAGE=$base")
    # docker/Dockerfile.train on a base other than nvidia/cuda (e.g. the local Debian one): the
    # same base builds, its own Python, no apt packages to add, no nvcc so no precompiled ops.
    if grep -q '^ARG BUILDER_IMAGE=' "$dockerfile" && [[ "$base" != nvidia/cuda:* ]]; then
        args+=(--build-arg "BUILDER_IMAGE=$base" --build-arg PYTHON=python3 --build-arg BUILD_APT_PACKAGES=
            --build-arg RUNTIME_APT_PACKAGES= --build-arg DS_BUILD_FUSED_ADAM=0)
    fi
fi

server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null || true; }
trap cleanup EXIT
if [[ -n "$wheelhouse" ]]; then
    ls "$wheelhouse"/*.whl >/dev/null 2>&1 || { echo "no wheels in $wheelhouse: run make wheelhouse" >&2; exit 1; }
    # A fixed port: the URL is part of the build arguments, so a new port would void the layer cache.
    port="${WHEELHOUSE_PORT:-48765}"
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)" 2>/dev/null; then
        echo "port $port is taken: set WHEELHOUSE_PORT to a free one" >&2
        exit 1
    fi
    python3 -m http.server --bind 127.0.0.1 --directory "$wheelhouse" "$port" >/dev/null 2>&1 &
    server=$!
    for _ in $(seq 50); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)" 2>/dev/null && break
        sleep 0.2
    done
    # --network host: the build's RUN steps reach the server on this host's loopback.
    args+=(--network host --build-arg PIP_NO_INDEX=1 --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/")
fi

started=$SECONDS
docker build "${args[@]}" .
size="$(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1 / 1e9}')"
echo "built $tag in $((SECONDS - started)) s: $size"
