"""The adapter agent's protocol against the deterministic upstream's copy of vLLM's runtime LoRA
endpoints (the real engine: tests/integration/engine/test_adapters.py): what it loads, unloads,
pulls, refuses and reports, and when it tries again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aistack.api.adapters import AdapterEntry, AdapterList, adapter_dir
from aistack.cli.main import app
from aistack.runtime.engine.adapter_agent import AdapterAgent
from aistack.testing.openai_server import RunningServer, run_openai_server

BASE = "base"


@pytest.fixture
def engine() -> Iterator[RunningServer]:
    with run_openai_server(models=[BASE]) as running:
        yield running


def peft_folder(path: Path, rank: int = 8) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    (path / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    return path


def write(config: Path, *entries: AdapterEntry, max_rank: int = 16) -> None:
    config.write_text(AdapterList(base=BASE, max_rank=max_rank, adapters=list(entries)).model_dump_json())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path: Path, engine: RunningServer) -> Iterator[tuple[AdapterAgent, Path, Path, Clock]]:
    root = tmp_path / "cache"
    peft_folder(root / "adapters" / "a")
    peft_folder(root / "adapters" / "b")
    clock = Clock()
    agent = AdapterAgent(config=tmp_path / "adapters.json", engine_url=engine.base_url, root=str(root),
                         report=tmp_path / "report.json", clock=clock)
    yield agent, tmp_path / "adapters.json", root, clock
    agent.close()


def phases(agent: AdapterAgent) -> list[tuple[str, str]]:
    report = agent.sync()
    assert report is not None
    return [(s.name, s.phase) for s in report.adapters]


def test_listed_adapters_are_loaded_and_unlisted_ones_unloaded(setup: tuple[AdapterAgent, Path, Path, Clock],
                                                                 engine: RunningServer) -> None:
    agent, config, root, _ = setup
    write(config, AdapterEntry(name="a", source="adapters/a"), AdapterEntry(name="b", source="adapters/b"))
    assert phases(agent) == [("a", "Loaded"), ("b", "Loaded")]
    assert engine.server.options.loras == {"a": f"{root}/adapters/a", "b": f"{root}/adapters/b"}
    loads = len(engine.requests)
    assert phases(agent) == [("a", "Loaded"), ("b", "Loaded")]
    assert len(engine.requests) == loads  # nothing to do: no call
    write(config, AdapterEntry(name="b", source="adapters/b"))
    assert phases(agent) == [("b", "Loaded")]
    assert engine.server.options.loras == {"b": f"{root}/adapters/b"}
    report = json.loads((config.parent / "report.json").read_text())
    assert report == {"adapters": [{"name": "b", "source": "adapters/b", "phase": "Loaded", "reason": None}]}


def test_an_adapter_whose_source_changed_is_loaded_again_from_its_new_folder(
        setup: tuple[AdapterAgent, Path, Path, Clock], engine: RunningServer) -> None:
    agent, config, root, _ = setup
    write(config, AdapterEntry(name="a", source="adapters/a"))
    phases(agent)
    write(config, AdapterEntry(name="a", source="adapters/b"))
    assert phases(agent) == [("a", "Loaded")]
    assert engine.server.options.loras == {"a": f"{root}/adapters/b"}


def test_an_engine_restart_is_healed_on_the_next_pass(setup: tuple[AdapterAgent, Path, Path, Clock],
                                                      engine: RunningServer) -> None:
    agent, config, _, _ = setup
    write(config, AdapterEntry(name="a", source="adapters/a"))
    phases(agent)
    engine.server.configure(loras={})  # a restarted engine holds no runtime adapter
    assert phases(agent) == [("a", "Loaded")]
    assert "a" in engine.server.options.loras


def test_a_rank_over_the_maximum_fails_with_the_reason_and_is_not_retried(
        setup: tuple[AdapterAgent, Path, Path, Clock], engine: RunningServer) -> None:
    agent, config, root, clock = setup
    peft_folder(root / "adapters" / "wide", rank=64)
    write(config, AdapterEntry(name="wide", source="adapters/wide"), max_rank=16)
    report = agent.sync()
    assert report is not None
    assert report.adapters[0].phase == "Failed"
    assert report.adapters[0].reason == "rank 64 (adapter_config.json) is greater than lora.maxRank (16)"
    assert "wide" not in engine.server.options.loras
    clock.now += 3600
    peft_folder(root / "adapters" / "wide", rank=8)
    assert phases(agent) == [("wide", "Failed")]  # same entry: not read again
    write(config, AdapterEntry(name="wide", source="adapters/wide", rank=8))  # the entry changed
    assert phases(agent) == [("wide", "Loaded")]


def test_a_missing_folder_is_failed_then_tried_again_after_the_retry_delay(
        setup: tuple[AdapterAgent, Path, Path, Clock]) -> None:
    agent, config, root, clock = setup
    write(config, AdapterEntry(name="late", source="adapters/late"))
    report = agent.sync()
    assert report is not None and report.adapters[0].phase == "Failed"
    assert "holds no adapter_config.json" in (report.adapters[0].reason or "")
    peft_folder(root / "adapters" / "late")
    assert phases(agent) == [("late", "Failed")]
    clock.now += agent.retry_s
    assert phases(agent) == [("late", "Loaded")]


def test_a_remote_adapter_is_pulled_into_its_own_folder_by_the_shared_pull(
        setup: tuple[AdapterAgent, Path, Path, Clock], engine: RunningServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An s3:// source: the base weights' pull (moto's S3 stands for the bucket)."""
    boto3 = pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    agent, config, root, _ = setup
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="acme-adapters")
        s3.put_object(Bucket="acme-adapters", Key="sql/adapter_config.json",
                      Body=json.dumps({"r": 8}).encode())
        s3.put_object(Bucket="acme-adapters", Key="sql/adapter_model.safetensors", Body=b"\0" * 128)
        write(config, AdapterEntry(name="sql", source="s3://acme-adapters/sql"),
              AdapterEntry(name="gone", source="s3://acme-adapters/nothing-here"))
        report = agent.sync()
    assert report is not None
    states = {s.name: s for s in report.adapters}
    folder = adapter_dir("s3://acme-adapters/sql", str(root))
    assert states["sql"].phase == "Loaded" and engine.server.options.loras["sql"] == folder
    assert (Path(folder) / "adapter_model.safetensors").stat().st_size == 128
    assert states["gone"].phase == "Failed" and "has no files" in (states["gone"].reason or "")


def test_without_network_a_remote_adapter_fails_saying_to_give_a_path(tmp_path: Path,
                                                                       engine: RunningServer) -> None:
    config = tmp_path / "adapters.json"
    write(config, AdapterEntry(name="sql", source="hf://acme/sql-lora@v1"))
    agent = AdapterAgent(config=config, engine_url=engine.base_url, root=str(tmp_path), pull_remote=False)
    try:
        report = agent.sync()
    finally:
        agent.close()
    assert report is not None and report.adapters[0].phase == "Failed"
    assert "hf://acme/sql-lora@v1 is not fetched here" in (report.adapters[0].reason or "")


def test_an_engine_that_does_not_answer_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "adapters.json"
    write(config, AdapterEntry(name="a", source="a"))
    agent = AdapterAgent(config=config, engine_url="http://127.0.0.1:9/v1", root=str(tmp_path))
    try:
        assert agent.sync() is None
    finally:
        agent.close()


def test_the_cli_runs_one_pass_and_says_whether_all_are_loaded(setup: tuple[AdapterAgent, Path, Path, Clock],
                                                               engine: RunningServer) -> None:
    _, config, root, _ = setup
    write(config, AdapterEntry(name="a", source="adapters/a"))
    args = ["engine", "adapters", "--config", str(config), "--engine", engine.base_url, "--root", str(root),
            "--once"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["adapters"][0]["phase"] == "Loaded"
    write(config, AdapterEntry(name="a", source="adapters/a"), AdapterEntry(name="x", source="adapters/x"))
    assert CliRunner().invoke(app, args).exit_code == 1
