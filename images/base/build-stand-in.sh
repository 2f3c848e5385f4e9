#!/usr/bin/env bash
# Builds a local stand-in for `python:3.11-slim` when no container registry is reachable
# (CI here, air-gapped machines): a minimal Debian bookworm root filesystem with Python 3.11,
# pip and venv, imported into local container storage under the name the Dockerfiles use.
# Idempotent: does nothing when the image is already present. Needs root, debootstrap, podman.
#
#   CONTAINERS_CONF=images/containers.conf images/base/build-stand-in.sh [IMAGE]
set -euo pipefail

image="${1:-docker.io/library/python:3.11-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if podman image exists "$image"; then
    echo "stand-in base image $image already present"
    exit 0
fi

rootfs="$(mktemp -d /var/tmp/aistack-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
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
