"""The command lines the in-cluster Jobs run are ones the CLI accepts, with the values the
operator meant: `aistack.api.commands` builds them, the CLI's `ingest` and `eval` parse them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.core import TyperGroup

from aistack.api.commands import EvalCommand, IngestCommand
from aistack.api.manifests import parse_stack
from aistack.cli.main import app
from aistack.operator.render import render

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def parsed(args: list[str]) -> dict[str, Any]:
    """What the CLI's command `args[0]` gets from `args[1:]` (click parses, nothing runs)."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    command = group.commands[args[0]]
    with command.make_context(args[0], args[1:]) as context:
        return dict(context.params)


def test_a_full_ingest_line_parses_to_the_values_it_was_built_from() -> None:
    line = IngestCommand(manifest="m.yaml", paths=("docs", "s3://bucket/prefix/"), qdrant_url="http://q:6333",
                         state="/tmp/state", base="/sources", tenant="team-a", prune=True,
                         max_file_size="64Mi")
    assert parsed(line.args()) == {
        "manifest": Path("m.yaml"), "paths": ["docs", "s3://bucket/prefix/"], "qdrant_url": "http://q:6333",
        "state": Path("/tmp/state"), "base": Path("/sources"), "tenant": "team-a", "prune": True,
        "max_file_size": "64Mi"}


def test_a_full_eval_line_parses_to_the_values_it_was_built_from() -> None:
    line = EvalCommand(manifest="m.yaml", dataset="q.jsonl", endpoint="http://gw:8080/v1", state="/tmp/state",
                       tracking_uri="http://mlflow:5000", api_key_env="KEYS", model_version="canary",
                       compare_stable=True)
    assert parsed(line.args()) == {
        "manifest": Path("m.yaml"), "dataset": Path("q.jsonl"), "endpoint": "http://gw:8080/v1",
        "state": Path("/tmp/state"), "tracking_uri": "http://mlflow:5000", "api_key_env": "KEYS",
        "model_version": "canary", "compare_stable": True}


def test_options_left_out_take_the_cli_defaults() -> None:
    assert parsed(IngestCommand(manifest="m.yaml").args()) == {
        "manifest": Path("m.yaml"), "paths": (), "qdrant_url": None, "state": None, "base": None,
        "tenant": None, "prune": False, "max_file_size": None}
    assert parsed(EvalCommand(manifest="m.yaml").args())["api_key_env"] == "AISTACK_API_KEY"


@pytest.mark.parametrize("example", ["rag", "production", "canary"])
def test_every_rendered_job_runs_a_command_line_the_cli_accepts(example: str) -> None:
    stack = parse_stack(yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text(encoding="utf-8")))
    jobs = [m for m in render(stack, version="9.9.9").manifests if m["kind"] == "Job"]
    assert jobs
    for job in jobs:
        [container] = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", "aistack.cli"]
        params = parsed(container["args"])
        assert params["manifest"] == Path("/etc/aistack/manifest/aistack.yaml")
        assert params["state"] == Path("/tmp/aistack")
        codes = [rule["onExitCodes"]["values"] for rule in job["spec"]["podFailurePolicy"]["rules"]]
        assert codes in ([[1]], [[1], [0, 1]])  # SKIPPED; FAILED, then anything but PASSED or FAILED
