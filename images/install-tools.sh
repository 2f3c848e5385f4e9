#!/usr/bin/env bash
# Installs what tests/containers needs to build and run the images without a Docker engine:
# Debian's buildah, podman, runc, slirp4netns and debootstrap (~20 s). Idempotent: does nothing
# when they are all there. Never fails the caller: where they cannot be installed (not root, no
# apt-get, no mirror) it says why and exits 0, and the container tests skip with that reason.
set -uo pipefail

tools=(buildah podman runc slirp4netns debootstrap)
missing=()
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0

say() { echo "container tooling: $*; the container tests will skip" >&2; exit 0; }
command -v apt-get >/dev/null 2>&1 || say "${missing[*]} missing and no apt-get here"
[ "$(id -u)" = 0 ] || say "${missing[*]} missing and installing them needs root"

echo "container tooling: installing ${tools[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${tools[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 \
         && apt-get install -y -q "${tools[@]}" >/dev/null 2>&1; } \
    || say "apt-get could not install ${tools[*]}"
exit 0
