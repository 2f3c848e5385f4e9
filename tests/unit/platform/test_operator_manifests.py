"""deploy/operator/ is generated from the data the Pulumi install uses (as crds/ from the models):
the committed files must be what the generator writes now, and the generator must not need
pulumi (the kustomize path runs without the platform extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from aistack.api.images import image_tag, package_version
from aistack.platform.operator_manifests import COMMAND, DEPLOY_DIR, GENERATED_HEADER, kustomize_files

ROOT = Path(__file__).resolve().parents[3]


def test_deploy_operator_is_what_the_generator_writes() -> None:
    stale = [name for name, text in kustomize_files().items()
             if not (ROOT / DEPLOY_DIR / name).is_file()
             or (ROOT / DEPLOY_DIR / name).read_text(encoding="utf-8") != text]
    assert stale == [], (f"{', '.join(stale)} in {DEPLOY_DIR} out of date: "
                         f"run `{COMMAND}` (or `make operator-manifests`)")


def test_every_generated_file_is_marked_and_installed_by_the_kustomization() -> None:
    kustomization = yaml.safe_load((ROOT / DEPLOY_DIR / "kustomization.yaml").read_text())
    files = kustomize_files()
    assert set(files) <= set(kustomization["resources"])
    assert all(text.startswith(GENERATED_HEADER) for text in files.values())
    [image] = kustomization["images"]
    assert image["newTag"] == image_tag(package_version())  # the tag the Pulumi install uses by default


def test_output_is_byte_stable() -> None:
    assert kustomize_files() == kustomize_files()


def test_the_generator_imports_no_pulumi(tmp_path: Path) -> None:
    code = ("import sys; from aistack.platform.operator_manifests import main; main([sys.argv[1]]); "
            "assert not [m for m in sys.modules if m.startswith('pulumi')], 'pulumi imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    assert {p.name for p in (tmp_path / DEPLOY_DIR).iterdir()} == set(kustomize_files())
