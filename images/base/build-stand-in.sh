#!/usr/bin/env bash
# Makes the Dockerfiles' base image `python:3.11-slim` available in local container storage:
# pulled from the registry when one is reachable, else a local stand-in built with debootstrap
# (CI here, air-gapped machines): a minimal Debian bookworm root filesystem with Python 3.11
# and venv, imported under the name the Dockerfiles use. Idempotent: does nothing when the
# image is already present. Needs root, podman, and for the stand-in debootstrap.
#
#   CONTAINERS_CONF=images/containers.conf images/base/build-stand-in.sh [IMAGE]
set -euo pipefail

image="${1:-docker.io/library/python:3.11-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if podman image exists "$image"; then
    echo "base image $image already present"
    exit 0
fi
if [ "${AISTACK_PULL_BASE:-1}" = 1 ] && timeout 120 podman pull -q "$image" >/dev/null 2>&1; then
    echo "base image $image pulled"
    exit 0
fi

rootfs="$(mktemp -d /var/tmp/aistack-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$mirror" >/dev/null
# Debian marks its Python as externally managed (PEP 668); the official image is not.
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
# Same trimming the official slim image does: no apt lists, docs or caches.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["python3"]' \
    --change 'ENV LANG=C.UTF-8' \
    - "$image" >/dev/null
echo "stand-in base image $image built from Debian bookworm"
