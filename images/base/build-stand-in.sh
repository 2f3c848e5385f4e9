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

# The Python: the official image has the newest 3.11 (some pinned packages need >= 3.11.5), while
# bookworm's is 3.11.2. So when this host has a CPython 3.11 of its own outside /usr (pyenv, a
# /usr/local build), that one is copied to the same path (no relocation) and linked from
# /usr/local/bin like the official image's; else Debian's python3 is used.
host_python="$(command -v python3.11 || true)"
prefix=""
if [ -n "$host_python" ]; then
    prefix="$("$host_python" -c 'import sys; print(sys.base_prefix if sys.version_info >= (3, 11, 5) else "")')"
fi
[ "$prefix" = /usr ] && prefix=""
libs=ca-certificates,libssl3,libffi8,libsqlite3-0,libreadline8,libexpat1,libbz2-1.0,liblzma5,libncursesw6,libuuid1,zlib1g,libcrypt1,libnsl2,libtirpc3,libgdbm6
if [ -n "$prefix" ]; then
    debootstrap --variant=minbase --include="$libs" bookworm "$rootfs" "$mirror" >/dev/null
    mkdir -p "$rootfs$prefix/bin" "$rootfs$prefix/lib/python3.11/site-packages"
    cp -a "$prefix/bin/python3.11" "$rootfs$prefix/bin/"
    cp -a "$prefix"/lib/libpython3.11.so* "$rootfs$prefix/lib/"
    # Like the official image: no debug symbols, no test suite, no -O/-OO bytecode (37 MB).
    if command -v strip >/dev/null; then
        find "$rootfs$prefix" -type f -name 'libpython3.11.so*' -exec strip --strip-unneeded {} +
    fi
    tar -C "$prefix/lib/python3.11" --exclude=./site-packages --exclude=./test --exclude='./config-3.11*' \
        --exclude='./idlelib' --exclude='./tkinter' --exclude='*.opt-1.pyc' --exclude='*.opt-2.pyc' \
        -c . | tar -C "$rootfs$prefix/lib/python3.11" -x
    for name in python3.11 python3 python; do ln -sf "$prefix/bin/python3.11" "$rootfs/usr/local/bin/$name"; done
    # The non-root image users must reach the interpreter (e.g. under /root/.pyenv): traverse only.
    d="$prefix"
    while [ "$d" != / ]; do chmod o+x "$rootfs$d"; d="$(dirname "$d")"; done
else
    debootstrap --variant=minbase --include="$libs,python3,python3-venv,python-is-python3" \
        bookworm "$rootfs" "$mirror" >/dev/null
    # Debian marks its Python as externally managed (PEP 668); the official image is not.
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
fi
# Same trimming the official slim image does: no apt lists, docs or caches.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["python3"]' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$image" >/dev/null
echo "stand-in base image $image built from Debian bookworm"
