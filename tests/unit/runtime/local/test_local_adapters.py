"""`aistack up`'s adapters against the deterministic upstream's LoRA endpoints: paths relative to the
manifest's folder load, a remote source is Failed saying why, the panel's line sums the engines."""

from __future__ import annotations

import json
from pathlib import Path

from aistack.api.v1alpha1.model import Adapter, ModelSpec, VllmSpec
from aistack.runtime.local.adapters import LocalAdapters
from aistack.testing.openai_server import run_openai_server


def test_paths_load_remote_sources_fail_and_the_line_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "adapters" / "a"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    model = ModelSpec(provider="vllm", name="base", vllm=VllmSpec(adapters=[
        Adapter(name="a", source="adapters/a"), Adapter(name="r", source="s3://acme-adapters/r")]))
    state = tmp_path / "state"
    state.mkdir()
    local = LocalAdapters(model, manifest_dir=tmp_path, state=state)
    with run_openai_server(models=["base"]) as one, run_openai_server(models=["base"]) as two:
        try:
            line = local.sync([one.base_url, two.base_url])
        finally:
            local.close()
        assert one.server.options.loras == two.server.options.loras == {"a": str(folder.resolve())}
    assert line == ("a Loaded, r Failed (s3://acme-adapters/r is not fetched here (no network to pull from): "
                    "give the adapter as a path, relative to the manifest's folder)")
    assert json.loads((state / "adapters-1.json").read_text())["adapters"][0]["phase"] == "Loaded"


def test_without_lora_nothing_runs(tmp_path: Path) -> None:
    local = LocalAdapters(ModelSpec(provider="vllm", name="base"), manifest_dir=tmp_path, state=tmp_path)
    assert not local.enabled and local.sync(["http://127.0.0.1:9/v1"]) == "" and local.names == []
