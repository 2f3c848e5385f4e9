"""The adapter agent: keeps the LoRA adapters a running vLLM engine holds equal to a list.

One agent per engine (in the cluster a sidecar of the model pod, reaching the engine on loopback;
it needs no Kubernetes API right). Each pass (`AdapterAgent.sync()`):
- reads the list (`aistack.api.adapters.AdapterList`) from its file, which the kubelet refreshes
  when the ConfigMap changes, so adding or removing an adapter restarts nothing;
- asks the engine what it serves (`GET /v1/models`: the base and each loaded adapter with its
  folder as `root`); an engine that is not up yet is asked again on the next pass;
- for a listed adapter the engine lacks: pulls it into the model cache when its source is remote
  (the base weights' pull, `aistack.runtime.engine.pull`, so the same credentials and resumption
  apply), checks its rank (`r` in `adapter_config.json`) against the engine's largest, and loads it
  (`POST /v1/load_lora_adapter`); an adapter whose source changed is unloaded and loaded again;
- unloads what the engine holds and the list no longer names (`POST /v1/unload_lora_adapter`).

An adapter that failed for a reason a retry cannot change (not found, too big for the volume, its
rank over the maximum, refused by the engine) stays Failed until its entry changes; one whose
source was unreachable is tried again after `retry_s`. After an engine restart (which drops
runtime adapters) the next pass loads them again. The report (`AdapterReport`) is written to a file
after each pass that changed it, and each change is a log line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aistack.api.adapters import (
    LOAD_PATH,
    UNLOAD_PATH,
    AdapterEntry,
    AdapterList,
    AdapterReport,
    AdapterState,
    adapter_dir,
    is_remote,
    parse_hf,
)
from aistack.api.model_cache import PullExit
from aistack.runtime.engine.pull import PullError, pull

log = logging.getLogger("aistack.adapters")
RETRY_S = 30.0


@dataclass
class _Failure:
    entry: AdapterEntry
    max_rank: int | None
    """What failed: a changed entry (or engine maximum) is tried again at once."""
    reason: str
    retry_at: float | None
    """None: never retried while the entry stays the same."""


class AdapterAgent:
    """Holds the list's adapters in the engine at `engine_url` (a base URL with `/v1`)."""

    def __init__(self, *, config: Path, engine_url: str, root: str, report: Path | None = None,
                 token: str | None = None, pull_remote: bool = True, retry_s: float = RETRY_S,
                 timeout_s: float = 120.0, clock: Callable[[], float] = time.monotonic,
                 publish: Callable[[AdapterReport], None] | None = None) -> None:
        """`publish`: called with the report after every pass the engine answered (the Lease writer,
        which writes only changes and heartbeats)."""
        self.config = config
        self.engine_url = engine_url.rstrip("/")
        self.root = root
        self.report_path = report
        self.token = token
        self.pull_remote = pull_remote
        self.publish = publish
        self.retry_s = retry_s
        self.clock = clock
        self.http = httpx.Client(timeout=timeout_s)
        self.failures: dict[str, _Failure] = {}
        self.report = AdapterReport()
        self._max_rank: int | None = None

    def close(self) -> None:
        self.http.close()

    def read_list(self) -> AdapterList | None:
        try:
            return AdapterList.model_validate(json.loads(self.config.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.error("adapter list %s unreadable: %s", self.config, err)
            return None

    def served(self) -> dict[str, str] | None:
        """The adapters the engine serves, name -> folder; None when it does not answer."""
        try:
            response = self.http.get(f"{self.engine_url}/models", timeout=5.0)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return {m["id"]: str(m.get("root") or "") for m in response.json().get("data", []) if m.get("parent")}

    def sync(self) -> AdapterReport | None:
        """One pass; the report, or None when the engine did not answer (nothing was changed)."""
        wanted = self.read_list()
        served = self.served()
        if served is None:
            return None
        entries = wanted.adapters if wanted is not None else []
        max_rank = self._max_rank = wanted.max_rank if wanted is not None else None
        listed = {e.name for e in entries}
        for name in sorted(set(served) - listed):
            self._unload(name)
        states = []
        for entry in entries:
            states.append(self._ensure(entry, served, max_rank))
        report = AdapterReport(adapters=states)
        if report != self.report:
            for state in states:
                before = next((s for s in self.report.adapters if s.name == state.name), None)
                if before != state:
                    log.info("adapter %s: %s%s", state.name, state.phase,
                             f" ({state.reason})" if state.reason else "")
            self.report = report
            self._write(report)
        if self.publish is not None:
            self.publish(report)
        return report

    def _ensure(self, entry: AdapterEntry, served: dict[str, str], max_rank: int | None) -> AdapterState:
        folder = adapter_dir(entry.source, self.root)
        if served.get(entry.name) == folder:
            self.failures.pop(entry.name, None)
            return AdapterState(name=entry.name, source=entry.source, phase="Loaded")
        failure = self.failures.get(entry.name)
        if failure is not None and failure.entry == entry and failure.max_rank == max_rank and (
                failure.retry_at is None or self.clock() < failure.retry_at):
            return AdapterState(name=entry.name, source=entry.source, phase="Failed", reason=failure.reason)
        self.failures.pop(entry.name, None)
        if entry.name in served:  # listed again with another source: the old files go first
            self._unload(entry.name)
        reason = self._pull(entry, Path(folder))
        if reason is None and (reason := _rank_problem(Path(folder), max_rank)) is not None:
            self._fail(entry, reason, retry=False)
        if reason is None:
            reason = self._load(entry, folder)
        if reason is not None:
            return AdapterState(name=entry.name, source=entry.source, phase="Failed", reason=reason)
        return AdapterState(name=entry.name, source=entry.source, phase="Loaded")

    def _pull(self, entry: AdapterEntry, folder: Path) -> str | None:
        if not is_remote(entry.source):
            if not (folder / "adapter_config.json").is_file():
                return self._fail(entry, f"{folder} holds no adapter_config.json", retry=True)
            return None
        if not self.pull_remote:
            return self._fail(entry, f"{entry.source} is not fetched here (no network to pull from): give "
                                     "the adapter as a path, relative to the manifest's folder", retry=False)
        if entry.source.startswith("hf://"):
            repo, revision = parse_hf(entry.source)
            model, source = repo, "hub"
        else:
            model, source, revision = entry.name, entry.source, None
        self._write(AdapterReport(adapters=[*(s for s in self.report.adapters if s.name != entry.name),
                                            AdapterState(name=entry.name, source=entry.source,
                                                         phase="Downloading")]))
        try:
            pull(model, source=source, dest=folder, token=self.token, revision=revision,
                 progress=lambda line: log.info("adapter %s: %s", entry.name, line))
        except PullError as err:
            return self._fail(entry, f"pull: {err}", retry=err.code == PullExit.UNREACHABLE)
        return None

    def _load(self, entry: AdapterEntry, folder: str) -> str | None:
        try:
            response = self.http.post(f"{self.engine_url}{LOAD_PATH}",
                                      json={"lora_name": entry.name, "lora_path": folder})
        except httpx.HTTPError as err:
            return self._fail(entry, f"the engine did not answer: {err}", retry=True)
        if response.status_code != 200:
            return self._fail(entry, _engine_message(response), retry=False)
        return None

    def _unload(self, name: str) -> None:
        try:
            response = self.http.post(f"{self.engine_url}{UNLOAD_PATH}", json={"lora_name": name})
        except httpx.HTTPError as err:
            log.warning("adapter %s: unload failed: %s", name, err)
            return
        if response.status_code == 200:
            log.info("adapter %s: unloaded", name)
        else:
            log.warning("adapter %s: unload refused: %s", name, _engine_message(response))

    def _fail(self, entry: AdapterEntry, reason: str, *, retry: bool) -> str:
        self.failures[entry.name] = _Failure(entry=entry, max_rank=self._max_rank, reason=reason,
                                             retry_at=self.clock() + self.retry_s if retry else None)
        return reason

    def _write(self, report: AdapterReport) -> None:
        if self.report_path is None:
            return
        self.report_path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.report_path.with_name(f".{self.report_path.name}.tmp")
        staging.write_text(report.model_dump_json(by_alias=True))
        os.replace(staging, self.report_path)

    def run(self, *, interval_s: float = 5.0, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            self.sync()
            time.sleep(interval_s)


def _rank_problem(folder: Path, max_rank: int | None) -> str | None:
    try:
        config: dict[str, Any] = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as err:
        return f"adapter_config.json unreadable: {err}"
    rank = config.get("r")
    if max_rank is not None and isinstance(rank, int) and rank > max_rank:
        return f"rank {rank} (adapter_config.json) is greater than lora.maxRank ({max_rank})"
    return None


def _engine_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else body.get("message")
    except ValueError:
        message = None
    return f"the engine refused it ({response.status_code}): {message or response.text[:300]}"
