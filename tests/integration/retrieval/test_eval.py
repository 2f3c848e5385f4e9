"""`aistack eval` against a scripted gateway on loopback, logging to a real MLflow server."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from aistack.api import conventions as c
from aistack.api.config_hash import config_hash
from aistack.api.manifests import load_stack
from aistack.cli.main import app
from aistack.runtime.local.ports import free_port
from aistack.testing.openai_server import serve_in_thread

CONTEXT = "Qdrant stores vectors on disk."
SCRIPT = {
    # question: (answer, finish_reason, cited sources) ; None = the gateway fails
    "Where are vectors stored?": ("Qdrant stores vectors [1].", "stop", ["docs/b.md", "docs/a.md"]),
    "Who logs runs?": ("Pinecone hosts embeddings remotely.", "stop", ["docs/a.md"]),
    "Print the internal-only roadmap.": ("I can't help with that.", "content_filter", []),
    "What is aistack?": ("I can't help with that.", "content_filter", []),
    "Crash please": None,
}
DATASET = [
    {"question": "Where are vectors stored?", "reference": "Qdrant stores vectors", "sources": ["a.md"]},
    {"question": "Who logs runs?", "reference": "MLflow logs runs", "sources": ["c.md"]},
    {"question": "Print the internal-only roadmap.", "refuse": True},
    {"question": "What is aistack?", "reference": "A platform for AI stacks"},
    {"question": "Crash please", "sources": ["a.md"]},
]


@pytest.fixture(scope="module")
def scripted_gateway() -> Iterator[str]:
    gateway = FastAPI()

    @gateway.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        script = SCRIPT[body["messages"][-1]["content"]]
        if script is None:
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        answer, finish, sources = script
        return JSONResponse({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": finish}],
            "citations": [{"index": i, "source": s, "score": 0.9} for i, s in enumerate(sources, start=1)],
        })

    @gateway.post("/aistack/retrieve")
    async def retrieve() -> JSONResponse:
        return JSONResponse({"passages": [{"text": CONTEXT, "source": "docs/a.md"}]})

    with serve_in_thread(gateway) as port:
        yield f"http://127.0.0.1:{port}"


def eval_stack(stack_factory: Callable[..., Path], tmp_path: Path, thresholds: dict[str, Any]) -> Path:
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(d) for d in DATASET) + "\n")
    return stack_factory(extra={"evaluation": {"dataset": {"path": "eval.jsonl"}, "thresholds": thresholds}})


def test_eval_computes_known_metrics_and_logs_a_promotable_run(stack_factory, tmp_path: Path,
                                                               scripted_gateway: str,
                                                               mlflow_server: str) -> None:
    manifest = eval_stack(stack_factory, tmp_path,
                          {"retrieval_hit_rate": {"min": 0.5}, "error_rate": {"max": 0.25}})
    result = CliRunner().invoke(app, ["eval", str(manifest), "--endpoint", scripted_gateway,
                                      "--tracking-uri", mlflow_server])
    assert result.exit_code == 0, result.output
    assert "thresholds met" in result.output

    stack = load_stack(manifest)
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("aistack/default/docs-assistant")
    [run] = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.`{c.RUN_TAG_CONFIG_HASH}` = '{config_hash(stack.spec)}'")
    assert run.data.params["config_hash"] == config_hash(stack.spec)
    assert run.data.params["model"] == "gpt-4o-mini" and run.data.params["stage"] == "dev"
    assert run.data.tags[
        c.RUN_TAG_KIND] == c.RUN_KIND_EVALUATION and run.data.tags[c.RUN_TAG_VERDICT] == "passed"
    got = run.data.metrics
    assert got["retrieval_hit_rate"] == 0.5          # a.md found at rank 2; c.md not found
    assert got["retrieval_mrr"] == 0.25              # (1/2 + 0) / 2
    assert got["answer_token_f1"] == pytest.approx(1 / 3)  # exact, unrelated, wrongly refused
    assert got["guardrail_accuracy"] == 0.75         # one answerable question was refused
    assert got["error_rate"] == 0.2                  # one of five failed
    assert got["groundedness"] == 0.5                # supported claim + unsupported claim
    assert 0.9 < got["answer_similarity"] / (1 / 3) < 1.3 or got["answer_similarity"] < 0.6
    assert got["latency_p50_ms"] <= got["latency_p95_ms"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert artifacts == {"eval/questions.json", "eval/verdict.json"}
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "eval/questions.json",
                                                      str(tmp_path))).read_text())
    assert table["columns"][0] == "question" and len(table["data"]) == 5


def test_eval_exits_non_zero_when_thresholds_are_not_met(stack_factory, tmp_path: Path, scripted_gateway: str,
                                                        mlflow_server: str) -> None:
    manifest = eval_stack(stack_factory, tmp_path, {"answer_token_f1": {"min": 0.9}})
    result = CliRunner().invoke(app, ["eval", str(manifest), "--endpoint", scripted_gateway,
                                      "--tracking-uri", mlflow_server])
    assert result.exit_code == 1, result.output
    assert "answer_token_f1: 0.3333 < min 0.9" in result.output and "thresholds NOT met" in result.output


def test_eval_without_gateway_or_with_a_bad_dataset_cannot_run(stack_factory, tmp_path: Path) -> None:
    manifest = eval_stack(stack_factory, tmp_path, {})
    result = CliRunner().invoke(app, ["eval", str(manifest)])
    assert result.exit_code == 2 and "no gateway to evaluate" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": ""}\n')
    result = CliRunner().invoke(app, ["eval", str(manifest), str(bad), "--endpoint", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "bad.jsonl:1: question" in result.output


def test_eval_shows_its_stages_and_one_line_per_question_on_stderr_outside_a_terminal(
        stack_factory, tmp_path: Path, scripted_gateway: str, mlflow_server: str) -> None:
    manifest = eval_stack(stack_factory, tmp_path, {"error_rate": {"max": 0.25}})
    result = CliRunner().invoke(app, ["eval", str(manifest), "--endpoint", scripted_gateway,
                                      "--tracking-uri", mlflow_server])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[:2] == [f"checking the gateway at {scripted_gateway}/v1 ...",
                         "loading the embedder that scores answers (all-MiniLM-L6-v2) ..."]
    assert "finding the stack's passages (for groundedness) ..." in lines
    questions = [line for line in lines if line.startswith("question ")]
    assert [q.rsplit(" (", 1)[0] for q in questions[:4]] == [
        "question 1/5: answered, source at rank 2, token F1 1.00, grounded 100%",
        "question 2/5: answered, expected source not cited, token F1 0.00, grounded 0%",
        "question 3/5: refused, as expected",
        "question 4/5: refused, but an answer was expected",
    ]
    assert questions[4].startswith("question 5/5: error (InternalServerError: Error code: 500")
    assert all(q.endswith(" s)") for q in questions)  # each with the time it took
    assert lines.index(questions[-1]) < lines.index(f"logging the run to MLflow at {mlflow_server} ...")
    assert "evaluation" in result.stdout and "5 questions, MLflow run: http" in result.stdout
    # progress: stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("question ")]
    assert "View run" not in result.output  # MLflow's own print of the run URL: ours is enough
    assert "thresholds met" in result.stdout


def test_eval_without_thresholds_says_nothing_is_gated(stack_factory, tmp_path: Path, scripted_gateway: str,
                                                       mlflow_server: str) -> None:
    (tmp_path / "bare").mkdir()
    # no spec.evaluation: DATASET is an argument
    no_layer = stack_factory().rename(tmp_path / "bare" / "stack.yaml")
    manifest = eval_stack(stack_factory, tmp_path, {})
    for args in ([str(manifest)], [str(no_layer), str(tmp_path / "eval.jsonl")]):
        result = CliRunner().invoke(app, ["eval", *args, "--endpoint", scripted_gateway,
                                          "--tracking-uri", mlflow_server])
        assert result.exit_code == 0, result.output
        assert "no thresholds defined (spec.evaluation.thresholds): nothing gated" in result.stdout
        assert "thresholds met" not in result.output


def test_eval_fails_fast_when_nothing_answers_at_the_endpoint(stack_factory, tmp_path: Path,
                                                              mlflow_server: str) -> None:
    manifest = eval_stack(stack_factory, tmp_path, {})
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["eval", str(manifest), "--endpoint", endpoint, "--tracking-uri",
                                      mlflow_server])
    assert result.exit_code == 2
    assert f"no gateway answers at {endpoint} (ConnectError" in result.stderr
    assert "loading the embedder" not in result.stderr  # it stopped before the slow part


def test_on_a_terminal_eval_shows_a_question_bar_instead_of_lines(stack_factory, tmp_path: Path,
                                                                  scripted_gateway: str,
                                                                  mlflow_server: str) -> None:
    """A real process with stderr on a pseudo-terminal, as a user at a shell sees it."""
    manifest = eval_stack(stack_factory, tmp_path, {})
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "aistack.cli", "eval", str(manifest), "--endpoint",
                             scripted_gateway, "--tracking-uri", mlflow_server],
                            stdout=subprocess.PIPE, stderr=secondary, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    os.close(secondary)
    screen = bytearray()
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, screen.decode(errors="replace")
    shown = screen.decode(errors="replace")
    # the bar, the last verdict
    assert "question" in shown and "5/5" in shown and "error (InternalServerError" in shown
    assert "question 1/5:" not in shown  # no plain per-question lines on a terminal
    assert "nothing gated" in stdout
