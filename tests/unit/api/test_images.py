"""Image references: one registry constant, the package version as tag, overrides that win."""

from __future__ import annotations

import pytest

from aistack.api import conventions
from aistack.api.images import image_reference, image_tag, operator_image, package_version, runtime_image


def test_default_references_use_the_registry_and_the_installed_version() -> None:
    version = package_version()
    assert operator_image() == f"{conventions.IMAGE_REGISTRY}/{conventions.OPERATOR_IMAGE_NAME}:{version}"
    assert runtime_image() == f"{conventions.IMAGE_REGISTRY}/{conventions.RUNTIME_IMAGE_NAME}:{version}"


def test_an_explicit_version_and_registry_are_used() -> None:
    assert operator_image(version="1.2.3", registry="registry.example.com:5000/team/") == (
        "registry.example.com:5000/team/operator:1.2.3")


def test_local_versions_become_valid_tags() -> None:
    assert image_tag("0.1.0+g1a2b3c.d20260101") == "0.1.0-g1a2b3c.d20260101"
    assert runtime_image(version="0.2.0.dev3+gabc") == f"{conventions.IMAGE_REGISTRY}/runtime:0.2.0.dev3-gabc"


@pytest.mark.parametrize("version", ["", "-1", ".1", "1 2", "1/2", "x" * 129])
def test_versions_that_cannot_be_tags_are_refused(version: str) -> None:
    with pytest.raises(ValueError, match="not a valid tag"):
        image_tag(version)


@pytest.mark.parametrize("registry", ["GHCR.io/Team", "ghcr.io//team", "ghcr.io/team with space", ""])
def test_invalid_repositories_are_refused(registry: str) -> None:
    with pytest.raises(ValueError, match="image repository"):
        image_reference(name="runtime", version="1.0.0", registry=registry)


def test_the_install_wide_runtime_override_wins_over_the_default() -> None:
    mirror = "mirror.internal/aistack/runtime@sha256:" + "a" * 64
    assert runtime_image(version="1.0.0", environ={conventions.RUNTIME_IMAGE_ENV: mirror}) == mirror
    assert runtime_image(version="1.0.0", environ={conventions.RUNTIME_IMAGE_ENV: "  "}) == (
        f"{conventions.IMAGE_REGISTRY}/runtime:1.0.0")
