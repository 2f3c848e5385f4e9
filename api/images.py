"""Full references of the images this repo builds: `<registry>/<name>:<tag>`.

The registry and names live in `aistack.api.conventions`; the tag is the package version, so an
operator of version X runs gateways of version X unless told otherwise. The operator's render
functions, the install manifests and the release workflow all derive references here, so a
fork that publishes elsewhere changes one constant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version as _dist_version

from aistack.api.conventions import IMAGE_REGISTRY, OPERATOR_IMAGE_NAME, RUNTIME_IMAGE_ENV, RUNTIME_IMAGE_NAME

# OCI distribution spec: a tag is at most 128 characters of [A-Za-z0-9_.-], not starting with . or -.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# A repository path: lowercase components separated by / (optionally a registry host[:port] first).
_REPOSITORY = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")


def package_version() -> str:
    """The installed aistack version: the default tag of every image."""
    try:
        return _dist_version("aistack")
    except PackageNotFoundError as err:  # running from a tree that was never installed
        raise RuntimeError("aistack is not installed; run `pip install -e .` or pass a version") from err


def image_tag(version: str) -> str:
    """The image tag of a package version. PEP 440 local versions (`0.1.0+g1a2b3c`) carry a `+`,
    which tags cannot; it becomes `-`, as in the tags the release workflow pushes."""
    tag = version.replace("+", "-")
    if not _TAG.fullmatch(tag):
        raise ValueError(f"version {version!r} gives the image tag {tag!r}, which is not a valid tag "
                         "(at most 128 of A-Z a-z 0-9 _ . -, not starting with . or -)")
    return tag


def image_reference(*, name: str, version: str | None = None, registry: str = IMAGE_REGISTRY) -> str:
    """`<registry>/<name>:<tag of version>`; the version defaults to the installed package's."""
    repository = f"{registry.rstrip('/')}/{name}"
    if not _REPOSITORY.fullmatch(repository):
        raise ValueError(f"image repository {repository!r} is not valid: lowercase letters, digits and "
                         "separators (. _ -) in /-separated parts, e.g. 'ghcr.io/aistack-dev/runtime'")
    return f"{repository}:{image_tag(version if version is not None else package_version())}"


def operator_image(*, version: str | None = None, registry: str = IMAGE_REGISTRY) -> str:
    """The operator image the install manifests deploy."""
    return image_reference(name=OPERATOR_IMAGE_NAME, version=version, registry=registry)


def runtime_image(*, version: str | None = None, registry: str = IMAGE_REGISTRY,
                  environ: Mapping[str, str] | None = None) -> str:
    """The gateway (and guardrails sidecar) image: `environ[RUNTIME_IMAGE_ENV]` when the install
    sets it (a mirror, a patched build), else the default reference. A stack's own
    `spec.gateway.image` is applied by the caller and wins over both."""
    override = (environ or {}).get(RUNTIME_IMAGE_ENV, "").strip()
    if override:
        return override
    return image_reference(name=RUNTIME_IMAGE_NAME, version=version, registry=registry)
