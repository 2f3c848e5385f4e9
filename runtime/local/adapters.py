"""`aistack up`'s LoRA adapters: the adapter agent of the cluster, run by the runner for each of its
engines (`aistack.runtime.engine.adapter_agent`).

An adapter's `source` is a path relative to the manifest's folder here (the cluster's model cache
stands in for it there); `hf://` and `s3://` adapters are not fetched (`aistack up` runs offline,
and the cluster's pull credentials are not here): each is Failed with that reason, and the rest
serve. The list is written into the state folder, every engine's agent reads it and reports into
`adapters-<n>.json` there; the runner's refresh loop runs a pass every few seconds, so an engine
that restarted gets its adapters back. The offline model stands in for the spec's model, so
adapters trained for the spec's model fail to load into it, each with the engine's reason.
"""

from __future__ import annotations

from pathlib import Path

from aistack.api.adapters import AdapterReport, adapter_list
from aistack.api.v1alpha1.model import ModelSpec
from aistack.runtime.engine.adapter_agent import AdapterAgent

LIST_FILE = "adapters.json"


class LocalAdapters:
    """The adapter agents of `aistack up`'s engines (one per engine URL, with `/v1`)."""

    def __init__(self, model: ModelSpec, *, manifest_dir: Path, state: Path) -> None:
        self.model = model
        self.root = manifest_dir.resolve()
        self.state = state
        self.agents: dict[str, AdapterAgent] = {}
        self.reports: dict[str, AdapterReport] = {}
        vllm = model.vllm
        self.enabled = vllm is not None and vllm.lora_enabled
        self.names = [a.name for a in vllm.adapters] if vllm is not None and self.enabled else []

    def sync(self, urls: list[str]) -> str:
        """One pass of each engine's agent (blocking: run it in a thread); the status line."""
        if not self.enabled:
            return ""
        listing = self.state / LIST_FILE
        text = adapter_list(self.model).model_dump_json(by_alias=True, indent=1)
        if not listing.exists() or listing.read_text() != text:
            listing.write_text(text)
        for url in [u for u in self.agents if u not in urls]:
            self.agents.pop(url).close()
            self.reports.pop(url, None)
        for i, url in enumerate(urls):
            agent = self.agents.get(url)
            if agent is None:
                agent = self.agents[url] = AdapterAgent(config=listing, engine_url=url, root=str(self.root),
                                                        report=self.state / f"adapters-{i}.json",
                                                        pull_remote=False)
            report = agent.sync()
            if report is not None:
                self.reports[url] = report
        return self.describe()

    def describe(self) -> str:
        """Each adapter's state over the engines: `sql Loaded, fr Failed (why)`."""
        parts = []
        for name in self.names:
            states = [s for r in self.reports.values() for s in r.adapters if s.name == name]
            failed = next((s for s in states if s.phase == "Failed"), None)
            if failed is not None:
                parts.append(f"{name} Failed ({failed.reason})")
            elif states and all(s.phase == "Loaded" for s in states):
                parts.append(f"{name} Loaded")
            else:
                parts.append(f"{name} Pending")
        return ", ".join(parts)

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()
        self.agents.clear()
