"""`aistack validate | crd | version` as a user runs them (real process, real exit codes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from aistack.api.crd import build_crd

ROOT = Path(__file__).resolve().parents[3]
INVALID = ROOT / "tests" / "unit" / "api" / "invalid"


def aistack(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aistack.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
        input=stdin)


def test_validate_examples_exits_zero_with_a_summary() -> None:
    examples = sorted(str(p) for p in (ROOT / "examples").glob("*.yaml"))  # one stack each
    result = aistack("validate", *examples)
    assert result.returncode == 0, result.stderr
    assert f"{len(examples)} AIStack(s) valid" in result.stdout
    for name in ("quickstart", "docs-assistant", "support-copilot"):
        assert name in result.stdout


def test_validate_prints_one_line_per_error_and_exits_one() -> None:
    files = [INVALID / "vllm-tp-not-dividing.yaml", INVALID / "inline-api-key.yaml"]
    result = aistack("validate", "--quiet", *map(str, files))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[:2] == [
        (f"{files[0]}[0]: spec.model.vllm.tensorParallelSize: 3 must divide gpu.count (4); "
         "use one of [1, 2, 4]"),
        (f"{files[1]}[0]: spec.model.openai.apiKey: inline secrets are not accepted; store it in a Secret "
         "and reference it with apiKeySecretRef: {name, key}"),
    ]
    assert lines[2] == "2 error(s)"
    assert "sk-live" not in result.stdout + result.stderr  # the secret itself is never echoed


def test_validate_a_mix_reports_errors_and_still_fails(tmp_path: Path) -> None:
    result = aistack("validate", str(ROOT / "examples" / "quickstart.yaml"),
                     str(INVALID / "missing-model.yaml"))
    assert result.returncode == 1
    assert "spec.model: required field is missing" in result.stderr


def test_validate_missing_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = aistack("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_validate_points_a_misplaced_field_to_where_it_lives() -> None:
    bad = INVALID / "unknown-field-by-meaning.yaml"
    result = aistack("validate", "--quiet", str(bad))
    assert result.returncode == 1
    assert (f"{bad}[0]: spec.model.vllm.model: unknown field; did you mean spec.model.name? "
            "it is set there, not under spec.model.vllm") in result.stderr.splitlines()
    assert "maxModelLen" not in result.stderr  # the closest spelling, but not what was meant


CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"


def test_validate_a_file_with_no_aistack_is_an_error_naming_it(tmp_path: Path) -> None:
    """It printed "0 AIStack(s) valid" and exited 0: a wrong file looked like a pass."""
    only_configmap, empty = tmp_path / "cm.yaml", tmp_path / "empty.yaml"
    only_configmap.write_text(CONFIGMAP)
    empty.write_text("# nothing yet\n")
    result = aistack("validate", str(only_configmap), str(empty))
    assert result.returncode == 1
    assert f"no AIStack found in {only_configmap} (it holds only v1/ConfigMap)" in result.stderr
    assert f"no AIStack found in {empty} (it has no YAML document)" in result.stderr
    assert "apiVersion: aistack.dev/v1alpha1 and kind: AIStack" in result.stderr
    assert "valid" not in result.stdout


def test_validate_a_file_mixing_an_aistack_and_other_kinds_passes(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(CONFIGMAP + "---\n" + (ROOT / "examples" / "quickstart.yaml").read_text())
    result = aistack("validate", str(mixed))
    assert result.returncode == 0, result.stderr
    assert "1 AIStack(s) valid" in result.stdout


def test_validate_dash_reads_standard_input() -> None:
    """`kubectl kustomize deploy/stages/prod | aistack validate -` failed: "cannot read: '-'"."""
    result = aistack("validate", "-", stdin=(ROOT / "examples" / "production.yaml").read_text())
    assert result.returncode == 0, result.stderr
    assert "1 AIStack(s) valid" in result.stdout and "<stdin>[0]" in result.stdout
    bad = aistack("validate", "--quiet", "-", stdin=(ROOT / "examples" / "quickstart.yaml").read_text()
                  .replace("provider: openai", "provider: tgi"))
    assert bad.returncode == 1 and "<stdin>[0]: spec.model.provider:" in bad.stderr


def test_validate_of_input_with_no_aistack_fails_saying_so() -> None:
    for text, held in [(CONFIGMAP, "it holds only v1/ConfigMap"), ("", "it has no YAML document")]:
        result = aistack("validate", "-", stdin=text)
        assert result.returncode == 1
        assert f"no AIStack found in <stdin> ({held})" in result.stderr
        assert "valid" not in result.stdout


def test_validate_prints_each_stacks_config_hash() -> None:
    """Users who log evaluation runs without `aistack eval` tag them with this hash."""
    from aistack.api.config_hash import config_hash
    from aistack.api.manifests import load_stack

    files = sorted((ROOT / "examples").glob("*.yaml"))
    result = aistack("validate", *map(str, files))
    assert result.returncode == 0, result.stderr
    for path in files:
        stack = load_stack(path)
        assert (f"config hash {config_hash(stack.spec)}: {stack.name} (stage {stack.spec.stage}, {path}[0])"
                in result.stdout.splitlines())


def test_crd_prints_the_generated_crd() -> None:
    result = aistack("crd")
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout) == build_crd()


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    result = aistack("version")
    assert result.stdout.strip() == version("aistack")


def test_eval_takes_the_first_key_of_a_gateway_keys_secret() -> None:
    from aistack.runtime.evaluation.evaluate import first_api_key

    assert first_api_key("\n  k-123 tenant-a\nk-456 tenant-b\n") == "k-123"
    assert first_api_key("single-key") == "single-key"
    assert first_api_key("") is None and first_api_key(None) is None
