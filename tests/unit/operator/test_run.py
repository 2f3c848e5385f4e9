"""Operator start-up: credentials from a kubeconfig shared by kopf and our client; CLI entry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from aistack.operator.handlers import connection_info
from aistack.operator.run import kube_configuration


def test_kubeconfig_feeds_both_clients(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True}}],
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
    for option in ("--namespace", "--kubeconfig", "--liveness", "--standalone", "--priority", "--drift-interval"):
        assert option in out
