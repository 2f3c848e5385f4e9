"""Operator start-up: credentials from a kubeconfig shared by kopf and our client; CLI entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aistack.operator.handlers import connection_info
from aistack.operator.run import kube_configuration


def test_kubeconfig_feeds_both_clients(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k",
                      "cluster": {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    configuration = kube_configuration(kubeconfig=str(path))
    assert configuration.host == "https://10.0.0.1:6443"
    info = connection_info(configuration)
    assert (info.server, info.token, info.insecure) == ("https://10.0.0.1:6443", "abc", True)


def test_module_entry_point_has_the_documented_options() -> None:
    out = subprocess.run([sys.executable, "-m", "aistack.operator", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for option in ("--namespace", "--kubeconfig", "--liveness", "--standalone", "--peering", "--priority",
                   "--drift-interval", "--leader-elect", "--leader-election-namespace"):
        assert option in out


def _kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://10.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "abc"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return str(path)


def test_leader_election_needs_a_namespace_for_its_lease(tmp_path: Path, monkeypatch) -> None:
    from aistack.operator.machinery.leader import LeaseOptions
    from aistack.operator.run import operator_options

    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    common = {"kubeconfig": _kubeconfig(tmp_path), "drift_interval": 300.0, "standalone": False,
              "priority": 100,
              "peering": None}
    options = operator_options(**common, leader_elect=True, leader_namespace="ops")
    assert options.leader == LeaseOptions(
        namespace="ops") and options.peering and options.peering.priority == 100
    monkeypatch.setenv("POD_NAMESPACE", "aistack-system")
    assert operator_options(**common,
                            leader_elect=True, leader_namespace=None).leader.namespace == "aistack-system"
    assert operator_options(**common, leader_elect=False, leader_namespace=None).leader is None
    monkeypatch.delenv("POD_NAMESPACE")
    if not Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").exists():
        with pytest.raises(ValueError, match="--leader-election-namespace"):
            operator_options(**common, leader_elect=True, leader_namespace=None)
    with pytest.raises(ValueError, match="--drift-interval"):
        operator_options(**{**common, "drift_interval": 0}, leader_elect=False, leader_namespace=None)
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaseOptions(namespace="ops", duration=5, renew_deadline=10)


def test_cli_reports_a_leader_election_without_namespace(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "POD_NAMESPACE"}
    result = subprocess.run([sys.executable, "-m", "aistack.operator", "--kubeconfig", _kubeconfig(tmp_path),
                             "--leader-elect"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "--leader-elect: no namespace for the Lease" in result.stderr


def test_namespaces_and_the_liveness_url_are_checked() -> None:
    from aistack.operator.run import check_liveness, check_namespaces

    assert check_namespaces(["team-a", "team-b", "team-a"]) == ["team-a", "team-b"]
    with pytest.raises(ValueError, match=r"--namespace: 'team-\*' is not a namespace name"):
        check_namespaces(["team-*"])
    with pytest.raises(ValueError, match="--namespace"):
        check_namespaces(["Team"])
    assert check_liveness("http://0.0.0.0:8081/healthz") == "http://0.0.0.0:8081/healthz"
    assert check_liveness("") is None
    for bad in ("0.0.0.0:8081", "http://0.0.0.0/healthz", "https://x:1/h", "http://x:port/h"):
        with pytest.raises(ValueError, match="--liveness"):
            check_liveness(bad)


def test_typer_cli_reports_bad_options_by_flag(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aistack.cli.main import app

    result = CliRunner().invoke(app, ["operator", "--kubeconfig", _kubeconfig(tmp_path), "-n", "team-*"])
    assert result.exit_code == 2
    assert "--namespace: 'team-*' is not a namespace name" in result.output


def test_peering_is_optional_unless_named(tmp_path: Path) -> None:
    """kopf's rule: `--peering NAME` makes the peering mandatory (kopf pauses while it is
    missing); without it, the `aistack` peering counts where it exists, and kopf is told so
    through its settings, not its `peering_name` argument (which would make it mandatory)."""
    import kopf

    from aistack.api.conventions import PEERING_NAME
    from aistack.operator.machinery.peering import PeeringOptions
    from aistack.operator.run import kopf_peering, operator_options

    common = {"kubeconfig": _kubeconfig(tmp_path), "drift_interval": 300.0, "priority": 7,
              "leader_elect": False,
              "leader_namespace": None}
    optional = operator_options(**common, standalone=False, peering=None)
    assert optional.peering == PeeringOptions(name=PEERING_NAME, priority=7, mandatory=False)
    named = operator_options(**common, standalone=False, peering="team-a")
    assert named.peering == PeeringOptions(name="team-a", priority=7, mandatory=True)
    assert operator_options(**common, standalone=True, peering=None).peering is None

    settings = kopf.OperatorSettings()
    kwargs = kopf_peering(optional, settings)
    assert "peering_name" not in kwargs and kwargs["standalone"] is False and kwargs["priority"] == 7
    assert (settings.peering.name, settings.peering.mandatory) == (PEERING_NAME, False)
    kopf_peering(named, settings)
    assert (settings.peering.name, settings.peering.mandatory) == ("team-a", True)

    with pytest.raises(ValueError, match="--peering team-a: cannot be combined with --standalone"):
        operator_options(**common, standalone=True, peering="team-a")
    for bad in ("", "Team", "team_a", "-team"):
        with pytest.raises(ValueError, match="--peering: .* is not an object name"):
            operator_options(**common, standalone=False, peering=bad)


@pytest.mark.parametrize("entry", [["-m", "aistack.operator"], ["-m", "aistack.cli", "operator"]])
def test_both_entry_points_refuse_a_named_peering_with_standalone(tmp_path: Path, entry: list[str]) -> None:
    result = subprocess.run([sys.executable, *entry, "--kubeconfig", _kubeconfig(tmp_path), "--standalone",
                             "--peering", "aistack"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--peering aistack: cannot be combined with --standalone" in result.stderr


# Start-up without a usable cluster configuration: one line naming what was tried, exit code 2,
# no traceback; the same from the image's entry point and from `aistack operator`.

ENTRY_POINTS = {"module": [sys.executable, "-m", "aistack.operator"],
                "cli": [sys.executable, "-m", "aistack.cli", "operator"]}


def _start_without_cluster(tmp_path: Path, entry: str, *args: str,
                           **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    clean.update(HOME=str(tmp_path), **env)  # no ~/.kube/config
    return subprocess.run([*ENTRY_POINTS[entry], *args], capture_output=True, text=True, env=clean,
                          timeout=120, cwd=tmp_path)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "ConfigException" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no usable cluster configuration: tried" in lines[0]
    return lines[0]


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_no_configuration_anywhere_names_every_source(tmp_path: Path, entry: str) -> None:
    line = _one_line(_start_without_cluster(tmp_path, entry))
    assert "in-cluster service account (not in a pod: KUBERNETES_SERVICE_HOST is unset)" in line
    assert "~/.kube/config (no $KUBECONFIG, no --kubeconfig PATH): no such file" in line


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_pod_without_its_service_account_token(tmp_path: Path, entry: str) -> None:
    from aistack.operator.run import SERVICE_ACCOUNT_DIR

    if (SERVICE_ACCOUNT_DIR / "token").exists():
        pytest.skip("this machine has a mounted service account token")
    line = _one_line(_start_without_cluster(tmp_path, entry, KUBERNETES_SERVICE_HOST="10.96.0.1",
                                            KUBERNETES_SERVICE_PORT="443"))
    assert f"{SERVICE_ACCOUNT_DIR}/token is missing (the service account token is not mounted)" in line
    assert "$KUBECONFIG is unset and no --kubeconfig PATH was given" in line


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_missing_kubeconfig_file_is_named(tmp_path: Path, entry: str) -> None:
    missing = tmp_path / "nowhere" / "config"
    line = _one_line(_start_without_cluster(tmp_path, entry, "--kubeconfig", str(missing)))
    assert f"--kubeconfig {missing}: no such file {missing}" in line
    line = _one_line(_start_without_cluster(tmp_path, entry, KUBECONFIG=str(missing)))
    assert f"$KUBECONFIG={missing}: no such file {missing}" in line


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_an_unusable_kubeconfig_says_why(tmp_path: Path, entry: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    assert f"--kubeconfig {empty}: Invalid kube-config" in _one_line(
        _start_without_cluster(tmp_path, entry, "--kubeconfig", str(empty)))
    no_context = tmp_path / "no-context"
    no_context.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [],
                                          "users": [], "contexts": []}))
    assert f"$KUBECONFIG={no_context}:" in _one_line(
        _start_without_cluster(tmp_path, entry, KUBECONFIG=str(no_context)))
