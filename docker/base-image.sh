#!/usr/bin/env bash
# Build a minimal Debian base image locally, for machines that cannot pull `FROM python:…`
# (air-gapped clusters, build hosts without a registry): debootstrap a bookworm root filesystem
# with Python 3.11 from the Debian mirror apt already uses here, and `docker import` it.
#
#   docker/base-image.sh [NAME:TAG]        (default ragtune-base:bookworm; needs root, debootstrap)
#
# Then build the images on it: make images BASE_IMAGE=ragtune-base:bookworm
# Python 3.11 is what the wheelhouse (make wheelhouse) is built for, so both must stay in step.
set -euo pipefail

TAG="${1:-ragtune-base:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"

if docker image inspect "$TAG" >/dev/null 2>&1 && [[ -z "${REBUILD:-}" ]]; then
    echo "base image $TAG exists (REBUILD=1 to rebuild it)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap not found: apt-get install -y debootstrap" >&2; exit 1; }

# The mirror apt already uses (deb822 .sources or one-line .list), unless DEBIAN_MIRROR says otherwise.
mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
fi
if [[ -z "$mirror" ]]; then
    mirror="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | grep -v security | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' | head -n1 || true)"
fi
[[ -n "$mirror" ]] || { echo "no Debian mirror in /etc/apt/sources.list(.d); set DEBIAN_MIRROR" >&2; exit 1; }

rootfs="$(mktemp -d /tmp/ragtune-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $SUITE from $mirror (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
    "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# Nothing of the build host's apt state travels: drop the package lists and caches.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' - "$TAG"
echo "imported $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1 / 1e6}'))"
