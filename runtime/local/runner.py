"""`aistack up`: the whole manifest on one machine, in one process and one event loop.

Parts: the gateway (the runtime's `create_app`) on 127.0.0.1, the embedded Qdrant engine
under the state folder (shared by startup ingestion and the gateway's retriever), a local
MLflow server (child process), guardrails in-process, and the model: the spec's endpoint
when reachable, else the offline model on its own loopback port. One event loop serves
everything because the store and the embedder are shared; uvicorn's own signal handling is
turned off so Ctrl-C stops every part in order.

Who sees what: the state folder's lock is taken before anything slow (a second `up` fails at
once); each slow stage is reported through `on_stage` (the CLI draws it); the status is
published when the stack is ready, and again only when it changes. Ctrl-C during the start
abandons the stage in flight (models load in daemon threads) and stops what has started; a
second Ctrl-C kills the children instead of waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import uvicorn

from aistack.api.engine import VLLM_VERSION
from aistack.api.gateway_config import GatewayConfig, ModelConfig, Replicas, Upstream
from aistack.api.scale_policy import ScalePolicy
from aistack.api.manifests import load_stack
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.engine.server import EngineServer
from aistack.runtime.local.adapters import LocalAdapters
from aistack.runtime.engine.locate import Build
from aistack.runtime.local.engine_model import EngineChoice, EnginePlan, EngineUnavailable, LocalEngine
from aistack.runtime.local.engine_scaler import EngineScaler
from aistack.runtime.local.loads import in_daemon_thread
from aistack.runtime.local.mlflow_server import (DEFAULT_PORT, INSTALL_HINT, MlflowServer,
                                                 missing_server_packages)
from aistack.runtime.local.model_probe import choose_model
from aistack.runtime.local.ports import free_port, port_free
from aistack.runtime.local.state import RUNNING_FILE, RunningStack, StateLock, local_gateway_config, state_dir

if TYPE_CHECKING:
    from aistack.runtime.gateway.engine_metrics import EngineLoad, EngineMetrics


LLM_RAILS = frozenset({"self_check_input", "self_check_output"})
MLFLOW_READY_SECONDS = 90.0
"""How long `up` waits for its MLflow before it reports ready anyway (traces then wait for it)."""
SERVER_STOP_SECONDS = 2
"""In-flight requests get this long to finish when the stack stops."""



class QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: `aistack up` owns Ctrl-C for all its parts."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class UpOptions:
    port: int = 8080
    state: Path | None = None
    model_url: str | None = None
    tracking_uri: str | None = None
    """Use this MLflow instead of starting one."""
    offline: bool = False
    """Use the offline model even when the spec's endpoint answers."""
    ingest: bool = True
    """Ingest `retrieval.sources` at start (idempotent: unchanged files cost a hash)."""
    mlflow_port: int = DEFAULT_PORT
    """The local MLflow's port; a free one when it is taken (the status says so)."""
    engine: EngineChoice = "auto"
    """What serves the local model: the vLLM engine where installed (`auto`), always (`vllm`), or
    transformers in-process (`transformers`)."""
    replicas: int | None = None
    """vLLM engines to start for the local model (the gateway routes over them as over a cluster's
    replicas); None: the spec's `model.vllm.replicas`, else 1."""


@dataclass
class Status:
    gateway_url: str = ""
    model: str = ""
    model_note: str = ""
    offline: bool = False
    engine: str = ""
    """What serves a local model (vLLM and its log, or transformers); '' for a remote endpoint."""
    adapters: str = ""
    """Each LoRA adapter's state over the engines (`LocalAdapters.describe()`); '' without adapters."""
    scaling: str = ""
    """What the engines' autoscaler does (`spec.model.vllm.autoscaling`): scaled to zero, starting, ...;
    '' without autoscaling."""
    engine_load: EngineLoad | None = None
    """The model engine's load as the gateway last read it from its `/metrics`; None where the model
    has no vLLM metrics (the transformers fallback, a hosted API) or the engine is not answering."""
    collection: str | None = None
    chunks: int | None = None
    mlflow_url: str | None = None
    mlflow_state: str = "off"
    ingest_note: str = ""
    guardrails: str = "off"
    notes: list[str] = field(default_factory=list)


def engine_log_name(replica: int) -> str:
    """The first engine logs to `engine.log`, the others to `engine-<n>.log`."""
    return "engine.log" if replica == 0 else f"engine-{replica}.log"


def _quiet(_: str) -> None:
    """The start progress of every engine but the first (one line of progress is shown)."""


class LocalStack:
    def __init__(self, manifest: Path, options: UpOptions, *,
                 on_status: Callable[[Status], None] | None = None,
                 on_stage: Callable[[str], None] | None = None,
                 on_detail: Callable[[str], None] | None = None) -> None:
        self.manifest = manifest
        self.options = options
        self.stack: AIStack = load_stack(manifest)
        self.folder = state_dir(manifest, self.stack, options.state)
        self.status = Status()
        self.interrupted = False
        """Ctrl-C came before the stack was ready: a load may still run in a daemon thread."""
        self._on_status = on_status or (lambda status: None)
        self._stage = on_stage or (lambda text: None)
        self._detail = on_detail or (lambda text: None)
        self._engines: list[LocalEngine] = []
        self._scaler: EngineScaler | None = None
        self._scaling: asyncio.Task[None] | None = None
        self._holder: Any = None
        self._adapters: LocalAdapters | None = None
        self._engines_starting: list[EngineServer] = []
        self._plan: tuple[Build, EnginePlan] | None = None
        """What the engines run (for the autoscaler's new engines)."""
        """Engine servers while they start (stopped with the rest if Ctrl-C comes then)."""
        self._servers: list[tuple[QuietServer, asyncio.Task[None]]] = []
        self._mlflow: MlflowServer | None = None
        self._retriever: Any = None
        self._store: Any = None
        self._engine_metrics: EngineMetrics | None = None
        self._lock = StateLock(self.folder, command="aistack up")
        self._stop = asyncio.Event()

    def _publish(self) -> None:
        self._on_status(self.status)

    def lock(self) -> None:
        """Own the state folder, or raise `StateBusy` naming who does; first, before anything slow."""
        if not self._lock.held:
            self._lock.acquire()

    async def run(self) -> None:
        self.lock()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        starting = asyncio.create_task(self.start())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()
                await self._refresh_until_stopped()
            else:
                self.interrupted = True
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        finally:
            stopping.cancel()
            try:
                await self.stop()
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
                self._lock.release()

    def _on_signal(self) -> None:
        if self._stop.is_set():
            self.force_stop()
        else:
            self._stop.set()

    async def start(self) -> None:
        if not port_free(self.options.port):
            raise RuntimeError(
                f"port {self.options.port} on 127.0.0.1 is in use: pass --port, or stop what uses it")
        self._check_gateway_keys()
        self.folder.mkdir(parents=True, exist_ok=True)
        tracking_uri = self._start_mlflow()
        self._stage("checking the model endpoint")
        choice = await asyncio.to_thread(choose_model, self.stack, model_url=self.options.model_url)
        offline = self.options.offline or choice.base_url is None
        model_url = None if offline else choice.base_url
        config = local_gateway_config(self.stack, state=self.folder, model_base_url=model_url,
                                      tracking_uri=tracking_uri)
        if offline:
            config = await self._start_local_model(config, reason="--offline" if self.options.offline
                                                   else choice.reason)
        else:
            self.status.model, self.status.model_note = config.model.public_name, choice.reason
        embedder = None
        if config.retrieval is not None:
            embedder = await self._open_retrieval(config)
        self.status.guardrails = "in-process" if config.guardrails is not None else "off"
        await self._start_gateway(config, embedder)
        await self._sync_adapters()  # each engine's adapters, before the panel says ready
        self._start_scaler()
        await self._wait_for_mlflow()
        await self._read_engine_load(first=True)
        self._publish()  # before up.json: whoever waits for up.json prints after the panel
        RunningStack(pid=os.getpid(), gateway_url=self.status.gateway_url, mlflow_url=self.status.mlflow_url,
                     model=self.status.model, offline_model=self.status.offline).write(self.folder)

    def _check_gateway_keys(self) -> None:
        """Unset gateway keys fail before anything slow starts (the gateway would refuse them last)."""
        from aistack.runtime.gateway.auth import ApiKeys

        ref = self.stack.spec.gateway.api_keys_secret_ref
        if ref is not None:
            try:
                ApiKeys.from_env(ref.env_name(), secret=ref)
            except ValueError as error:
                raise RuntimeError(str(error)) from None

    def _start_mlflow(self) -> str | None:
        spec = self.stack.spec
        if spec.observability is None:
            return None
        external = spec.observability.mlflow.external
        if self.options.tracking_uri or external is not None:
            self.status.mlflow_url = self.options.tracking_uri or (external.tracking_uri if external
                                                                   else None)
            self.status.mlflow_state = "external"
            return self.status.mlflow_url
        missing = missing_server_packages()
        if missing:
            # Serving goes on without traces rather than failing on a child process that exits.
            self.status.mlflow_state = "not installed"
            self.status.notes.append(f"no local MLflow server: {', '.join(missing)} missing (the runtime "
                                     "extra carries the tracing client only); traces are off. "
                                     f"{INSTALL_HINT}")
            return None
        self._mlflow = MlflowServer(folder=self.folder / "mlflow", port=self.options.mlflow_port)
        self._mlflow.start()
        self._stage(f"starting MLflow at {self._mlflow.url} (in the background)")
        self.status.mlflow_url, self.status.mlflow_state = self._mlflow.url, "starting"
        if self._mlflow.moved_from is not None:
            self.status.notes.append(f"MLflow's port {self._mlflow.moved_from} is in use: its UI is on "
                                     f"{self._mlflow.port} instead (--mlflow-port picks another)")
        return self._mlflow.url

    async def _wait_for_mlflow(self) -> None:
        """Ready means traced: the first requests' traces are not dropped while MLflow starts."""
        mlflow = self._mlflow
        if mlflow is None:
            return
        deadline = time.monotonic() + MLFLOW_READY_SECONDS
        waiting = False
        while time.monotonic() < deadline:
            if await self._refresh_mlflow():
                return
            if not waiting:
                self._stage(f"waiting for MLflow at {mlflow.url}")
                waiting = True
            await asyncio.sleep(0.5)
        self.status.notes.append(f"MLflow did not answer within {MLFLOW_READY_SECONDS:.0f} s: traces are "
                                 f"dropped until it does (its log: {mlflow.log})")

    async def _refresh_mlflow(self) -> bool:
        """Follow the local MLflow (starting, healthy, exited); True once it is healthy or gone."""
        mlflow = self._mlflow
        if mlflow is None or self.status.mlflow_state == "exited":
            return True
        code = mlflow.exit_code()
        if code is not None:
            self.status.mlflow_state = "exited"
            self.status.notes.append(
                f"MLflow exited with code {code}: traces are off (its log: {mlflow.log})")
            return True
        if self.status.mlflow_state == "starting" and await asyncio.to_thread(mlflow.healthy):
            self.status.mlflow_state = "healthy"
        return self.status.mlflow_state == "healthy"

    async def _start_local_model(self, config: GatewayConfig, *, reason: str) -> GatewayConfig:
        """The vLLM engine where it can serve (per --engine), else the offline model in-process."""
        from aistack.runtime.local.offline_model import OfflineModelUnavailable

        if self.options.engine != "transformers":
            try:
                return await self._start_engine(config, reason=reason)
            except (EngineUnavailable, OfflineModelUnavailable) as error:
                if self.options.engine == "vllm":
                    raise RuntimeError(f"{error} (--engine vllm; --engine auto falls back to transformers)"
                                       ) from None
                self.status.notes.append(f"the offline model runs through transformers (~10 tok/s, one "
                                         f"request at a time) because {error}")
        return await self._start_offline_model(config, reason=reason)

    async def _start_engine(self, config: GatewayConfig, *, reason: str) -> GatewayConfig:
        from aistack.runtime.engine.locate import detect_build
        from aistack.runtime.local.engine_model import launch, plan, usable_engine, wait_ready
        from aistack.runtime.local.offline_weights import is_prepared, prepare_weights, weights_folder

        build = detect_build()
        engine = usable_engine(build)
        folder = weights_folder()
        chosen = plan(self.stack, build, weights=folder)
        self._adapters = LocalAdapters(chosen.model, manifest_dir=self.manifest.parent, state=self.folder)
        if chosen.offline and not is_prepared(folder):
            self._stage("preparing the offline model's weights for vLLM (once, ~30 s)")
            await in_daemon_thread(prepare_weights, folder, stage=self._stage)
        count = self._engine_count(build)
        self._stage(f"starting {f'{count} engines of ' if count > 1 else ''}vLLM {VLLM_VERSION} ({build} "
                    f"build) with {chosen.model.public_name} (~25 s on 2 cores"
                    f"{', each engine ~4 GB of memory' if count > 1 else ''})")
        servers = self._engines_starting = [
            launch(engine, build, chosen, log=self.folder / engine_log_name(i)) for i in range(count)]
        self._plan = (build, chosen)
        try:
            async with asyncio.TaskGroup() as group:
                waits = [group.create_task(wait_ready(server, progress=self._detail if i == 0 else _quiet))
                         for i, server in enumerate(servers)]
        except BaseExceptionGroup as failed:  # the others were cancelled, and so stopped
            raise failed.exceptions[0] from None
        seconds = max(w.result() for w in waits)
        self._engines = [LocalEngine(server, build, chosen, index=i) for i, server in enumerate(servers)]
        self._engines_starting = []
        self.status.engine = f"{self._describe_engines()}; ready in {seconds:.0f} s"
        if count > 1 and self._policy(build) is None:
            source = "--replicas" if self.options.replicas else "model.vllm.replicas"
            self.status.notes.append(f"{count} vLLM engines ({source}), each ~4 GB of memory; the gateway "
                                     f"routes over them (policy {self._routing_policy()}); --replicas 1 "
                                     "starts one")
        urls = [f"{server.base_url}/v1" for server in servers]
        if not chosen.offline:
            self.status.model = config.model.public_name
            self.status.model_note = f"served by the local vLLM engine ({reason})"
            return config.model_copy(update={"model": config.model.model_copy(update={
                "primary": self._upstream(urls, model=chosen.model.public_name), "fallback": None})})
        return self._offline_config(config, urls=urls, reason=reason)

    def _engine_count(self, build: Build) -> int:
        """`--replicas`, else the spec's vLLM replicas, else 1; one on a GPU host (each engine takes
        most of a GPU's memory). With autoscaling: `minReplicas`, at least 1 (it stops when idle)."""
        vllm = self.stack.spec.model.vllm
        policy = self._policy(build)
        if policy is not None:
            return max(policy.min_replicas, 1)
        wanted = self.options.replicas or (vllm.replicas if vllm is not None and vllm.replicas else 1)
        if wanted > 1 and build == "cuda":
            self.status.notes.append(f"one vLLM engine instead of {wanted}: locally each would take most of "
                                     "the GPU's memory")
            return 1
        return wanted

    def _policy(self, build: Build) -> ScalePolicy | None:
        """The spec's autoscaling for the local engines (one at most on the CUDA build); None without
        it or with `--replicas`, which pins the count."""
        vllm = self.stack.spec.model.vllm
        if vllm is None or vllm.autoscaling is None or self.options.replicas:
            return None
        policy = ScalePolicy.of(vllm.autoscaling)
        if build == "cuda" and policy.max_replicas > 1:
            return replace(policy, min_replicas=min(policy.min_replicas, 1), max_replicas=1)
        return policy

    def _routing_policy(self) -> Literal["prefix", "least-busy", "round-robin"]:
        vllm = self.stack.spec.model.vllm
        return vllm.routing.policy if vllm is not None else "prefix"

    def _upstream(self, urls: list[str], *, model: str) -> Upstream:
        """One engine's URL, or every engine's with the spec's routing policy."""
        scaled = self._plan is not None and self._policy(self._plan[0]) is not None
        replicas = Replicas(urls=urls, policy=self._routing_policy()) if len(urls) > 1 or scaled else None
        return Upstream(base_url=urls[0], model=model, timeout_seconds=300.0, replicas=replicas,
                        adapters=(self._adapters.names or None) if self._adapters is not None else None)

    def _describe_engines(self) -> str:
        if not self._engines:
            return f"vLLM {VLLM_VERSION}: no engine running"
        if len(self._engines) == 1:
            return self._engines[0].describe()
        pids = ", ".join(str(e.server.process.pid) for e in self._engines)
        return (f"vLLM {VLLM_VERSION} ({self._engines[0].build} build) x{len(self._engines)}, pids {pids}, "
                f"logs {self.folder}/engine*.log")

    async def _start_offline_model(self, config: GatewayConfig, *, reason: str) -> GatewayConfig:
        from aistack.runtime.local.offline_model import OfflineModel, offline_app

        self._stage("loading the offline model (SmolLM2-135M) in-process")
        model = await in_daemon_thread(OfflineModel)
        url = await self._serve(offline_app(model, instead_of=config.model.public_name), port=free_port())
        self.status.engine = "transformers, in-process (slow: ~10 tok/s, one request at a time)"
        if (vllm := self.stack.spec.model.vllm) is not None and vllm.adapters:
            self.status.notes.append("LoRA adapters are not served: only the vLLM engine serves them "
                                     "(aistack engine install)")
        return self._offline_config(config, urls=[f"{url}/v1"], reason=reason)

    def _offline_config(self, config: GatewayConfig, *, urls: list[str], reason: str) -> GatewayConfig:
        """The gateway routed to the offline model, wherever it runs: its own name, extractive
        answers (a 135M model's own writing is invented), defaults within its context."""
        from aistack.runtime.local.offline_model import CONTEXT_TOKENS, OFFLINE_MODEL_NAME, notice

        spec_model = config.model.public_name
        defaults = config.model.defaults
        if defaults.max_tokens is not None and defaults.max_tokens > CONTEXT_TOKENS:
            # the offline model refuses more than its context; every request would fail on the spec's default
            self.status.notes.append(f"spec.model.defaults.maxTokens {defaults.max_tokens} is over the "
                                     f"offline model's {CONTEXT_TOKENS}-token context: it answers with at "
                                     f"most {CONTEXT_TOKENS}")
            defaults = defaults.model_copy(update={"max_tokens": CONTEXT_TOKENS})
        self.status.model, self.status.offline = OFFLINE_MODEL_NAME, True
        self.status.model_note = f"OFFLINE model (spec model {spec_model}: {reason})"
        guardrails = config.guardrails
        if guardrails is not None and guardrails.rails.model is None and guardrails.rails.uses_llm:
            # a 135M model judging safety would refuse or pass at random: keep only the rails that need no LLM
            rails = guardrails.rails.model_copy(update={
                "input": [r for r in guardrails.rails.input if r not in LLM_RAILS],
                "output": [r for r in guardrails.rails.output if r not in LLM_RAILS]})
            guardrails = guardrails.model_copy(update={"rails": rails})
            self.status.notes.append("self-check rails are off: the offline model cannot judge safety "
                                     "(fast rails still run)")
        return config.model_copy(update={"guardrails": guardrails, "model": ModelConfig(
            public_name=OFFLINE_MODEL_NAME, defaults=defaults, answers="extractive",
            notice=notice(spec_model), scaling=config.model.scaling if self._engines else None,
            primary=self._upstream(urls, model=OFFLINE_MODEL_NAME))})

    async def _open_retrieval(self, config: GatewayConfig) -> Any:
        from aistack.runtime.ingestion.pipeline import Ingestor
        from aistack.runtime.ingestion.sources import Target
        from aistack.runtime.retrieval.embedders import build_embedder
        from aistack.runtime.retrieval.factory import collection_spec, open_store
        from aistack.runtime.retrieval.retriever import QdrantRetriever

        assert config.retrieval is not None
        r = config.retrieval
        store = self._store = open_store(r, spec=collection_spec(r, stack=self.stack))
        self._stage(f"loading the embedder ({r.embedder.model})")
        embedder = await in_daemon_thread(build_embedder, r.embedder)
        self._retriever = QdrantRetriever(embedder=embedder, store=store, top_k=r.top_k,
                                          score_threshold=r.score_threshold,
                                          max_context_tokens=r.max_context_tokens)
        await store.ensure_collection()
        sources = self.stack.spec.retrieval.sources if self.stack.spec.retrieval else []
        if self.options.ingest and sources:
            assert self.stack.spec.retrieval is not None
            ingestor = Ingestor(store=store, embedder=embedder, chunking=r.chunking,
                                base=self.manifest.resolve().parent,
                                max_file_bytes=self.stack.spec.retrieval.max_file_bytes,
                                on_working=lambda source, text: self._stage(f"ingesting {source}: {text}"))
            listings = await asyncio.to_thread(
                ingestor.list,
                [Target(uri=s.uri, tenant=s.tenant, include=tuple(s.include)) for s in sources])
            self._stage(f"ingesting {sum(len(listing.files) for listing in listings)} files from "
                        + ", ".join(s.uri for s in sources))
            report = await ingestor.ingest(listings)
            self.status.ingest_note = (f"{report.files} files: {report.new} new, {report.changed} changed, "
                                       f"{report.unchanged} unchanged, {len(report.errors)} skipped")
            self.status.notes += [f"{source}: {note}" for source, note in report.warnings]
            self.status.notes += [f"skipped {source}: {reason}" for source, reason in report.errors]
        self.status.collection = r.collection
        self.status.chunks = await store.count()
        return embedder

    async def _start_gateway(self, config: GatewayConfig, embedder: Any) -> None:
        from aistack.runtime.gateway.app import create_app
        from aistack.runtime.gateway.retrieve import add_local_retrieve

        self._stage("starting the gateway")
        app = await in_daemon_thread(create_app, config, retriever=self._retriever, embedder=embedder)
        retriever = self._retriever
        if retriever is not None and config.server.api_keys_env is None:
            add_local_retrieve(app, retriever=retriever, tenant_header=config.server.tenant_header)

        self.status.gateway_url = await self._serve(app, port=self.options.port)
        self._engine_metrics = app.state.engine_metrics
        self._holder = app.state.holder

    def _start_scaler(self) -> None:
        """With autoscaling, the engines follow the gateway's load from now on (`EngineScaler`)."""
        policy = self._policy(self._plan[0]) if self._plan is not None and self._engines else None
        if policy is None:
            return
        self._scaler = EngineScaler(policy=policy, engines=self._engines, start=self._scale_up_engine,
                                    stop=self._scale_down_engine, listed=self._list_engines,
                                    load=self._model_load, busy=self._engine_busy,
                                    on_change=self._scaling_changed)
        self.status.scaling = self._scaler.state()
        self._scaling = asyncio.create_task(self._scaler.run())

    def _pool(self) -> Any:
        return self._holder.current.model.pools.get("primary")

    def _list_engines(self, urls: list[str]) -> None:
        pool = self._pool()
        if pool is not None:
            pool.list_urls(urls)

    def _engine_busy(self, url: str) -> int:
        pool = self._pool()
        return 0 if pool is None else pool.router.in_flight.get(url, 0)

    def _model_load(self) -> tuple[int, int, int]:
        """(requests in flight to the model or held, held, waiting in its engines), as the gateway
        counts them."""
        demand = self._holder.current.model.demand
        return (0, 0, 0) if demand is None else (demand.in_flight, demand.held, demand.waiting)

    async def _scale_up_engine(self, index: int) -> LocalEngine:
        from aistack.runtime.local.engine_model import launch, usable_engine, wait_ready

        assert self._plan is not None
        build, chosen = self._plan
        server = launch(usable_engine(build), build, chosen, log=self.folder / engine_log_name(index))
        self._engines_starting.append(server)
        try:
            await wait_ready(server)
        finally:
            self._engines_starting.remove(server)
        return LocalEngine(server, build, chosen, index=index)

    async def _scale_down_engine(self, engine: LocalEngine) -> None:
        await asyncio.to_thread(engine.server.stop, grace_s=10)

    def _scaling_changed(self) -> None:
        assert self._scaler is not None
        self.status.scaling = self._scaler.state()
        self.status.engine = self._describe_engines()
        self._publish()

    async def _read_engine_load(self, *, first: bool = False) -> bool:
        """Take the engine's load from the gateway's own reads (no request of ours; `first`: wait for
        its first read, bounded). True when the load appeared or went: the panel shows its row only
        while there is one, and is not printed again for a change of the numbers alone."""
        from aistack.runtime.gateway.engine_metrics import SCRAPE_TIMEOUT_S, EngineLoad

        reader = self._engine_metrics
        if reader is None:
            return False
        if first:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.first_round(), timeout=SCRAPE_TIMEOUT_S + 1)
        latest = reader.latest()
        load = latest if isinstance(latest, EngineLoad) else None
        appeared_or_went = (load is None) != (self.status.engine_load is None)
        self.status.engine_load = load
        return appeared_or_went

    async def _serve(self, app: Any, *, port: int) -> str:
        server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                            access_log=False, lifespan="on",
                                            timeout_graceful_shutdown=SERVER_STOP_SECONDS))
        task = asyncio.create_task(server.serve())
        self._servers.append((server, task))
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"the server on 127.0.0.1:{port} stopped while starting")
            await asyncio.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    async def _refresh_until_stopped(self) -> None:
        """Publish the status again only when it changes (MLflow came up or went, chunks changed)."""
        while not self._stop.is_set():
            state = self.status.mlflow_state
            await self._refresh_mlflow()
            changed = state != self.status.mlflow_state or await self._restart_engine_if_exited()
            changed = await self._read_engine_load() or changed
            changed = await self._sync_adapters() or changed
            if self._retriever is not None:

                chunks = await self._retriever.store.count()
                changed = changed or chunks != self.status.chunks
                self.status.chunks = chunks
            if changed:
                self._publish()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=2.0)

    async def _sync_adapters(self) -> bool:
        """A pass of each running engine's adapter agent; True when the status line changed."""
        if self._adapters is None or not self._adapters.enabled:
            return False
        urls = [f"{e.base_url}/v1" for e in self._engines if e.server.exit_code() is None]
        line = await asyncio.to_thread(self._adapters.sync, urls)
        changed = line != self.status.adapters
        self.status.adapters = line
        return changed

    async def _restart_engine_if_exited(self) -> bool:
        """An engine that exited (killed, crashed) is started again on the same port, so the gateway's
        route stays right; meanwhile its requests go to the other engines (the gateway's replica
        failover), or get a clean upstream error and /readyz says the model is not reachable where
        it was the only one. Ctrl-C during the restart ends it (the refresh loop must not hold the
        stop for the engine's whole start). True when the status changed."""
        changed = False
        for engine in list(self._engines):
            if engine.server.exit_code() is not None:
                changed = await self._restart_engine(engine) or changed
        return changed

    async def _restart_engine(self, engine: LocalEngine) -> bool:
        from aistack.runtime.local.engine_model import launch, usable_engine, wait_ready

        code = engine.server.exit_code()
        engine.server.stop()
        port = int(engine.base_url.rsplit(":", 1)[1])
        engine.restarts += 1
        which = ("the vLLM engine" if len(self._engines) == 1
                 else f"vLLM engine {self._engines.index(engine) + 1} of {len(self._engines)}")
        self.status.notes = [n for n in self.status.notes if not n.startswith(which)]
        try:
            server = launch(usable_engine(engine.build), engine.build, engine.plan, log=engine.server.log,
                            port=port)
            self._engines_starting = [server]
            ready = asyncio.ensure_future(wait_ready(server))
            stopping = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not ready.done():  # stopping: wait_ready stops the engine when cancelled
                ready.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ready
                self._engines.remove(engine)
                self._engines_starting = []
                return False
            seconds = ready.result()
        except EngineUnavailable as error:
            self._engines.remove(engine)
            self._engines_starting = []
            down = "the model is down" if not self._engines else f"{len(self._engines)} engines serve"
            self.status.engine = f"stopped: {error}" if not self._engines else self._describe_engines()
            self.status.notes.append(f"{which} exited with code {code} and did not start again: "
                                     f"{down} until `aistack up` runs again")
            return True
        engine.server, self._engines_starting = server, []
        self.status.engine = f"{self._describe_engines()}; restarted in {seconds:.0f} s"
        self.status.notes.append(f"{which} exited with code {code} and was restarted "
                                 f"({engine.restarts} restart{'s' if engine.restarts > 1 else ''})")
        return True

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """Gateway first (no new requests; its trace exporter drains), then the model, the store and
        MLflow, each bounded, so a stop takes seconds and leaves no child process behind."""
        if self._stop.is_set():
            self._stage("stopping (Ctrl-C again to force)")
        if self._scaling is not None:  # no engine starts or stops behind the stop
            self._scaling.cancel()
            with contextlib.suppress(BaseException):
                await self._scaling
            self._scaling = None
        if self._adapters is not None:
            self._adapters.close()
        for server, _ in reversed(self._servers):
            server.should_exit = True
        for server, task in reversed(self._servers):
            try:  # requests get SERVER_STOP_SECONDS, then the lifespan closes the tracer (bounded too)
                await asyncio.wait_for(asyncio.shield(task), timeout=SERVER_STOP_SECONDS + 8)
            except TimeoutError:
                server.force_exit = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, timeout=2)
            except Exception:  # noqa: BLE001 - a server that failed has nothing left to stop
                pass
        self._servers.clear()
        for child in multiprocessing.active_children():  # an exporter that outlived its gateway's lifespan
            child.kill()
            child.join(2)
        store, self._store, self._retriever = self._store, None, None
        if store is not None:
            with contextlib.suppress(Exception):  # flushes the shard; the data is kept either way
                await asyncio.wait_for(store.close(), timeout=5)
        servers = [e.server for e in self._engines] + self._engines_starting
        await asyncio.gather(*(asyncio.to_thread(server.stop, grace_s=10) for server in servers))
        self._engines, self._engines_starting = [], []
        if self._mlflow is not None:
            await asyncio.to_thread(self._mlflow.stop)
            self._mlflow = None
        with contextlib.suppress(FileNotFoundError):
            (self.folder / RUNNING_FILE).unlink()

    def force_stop(self) -> None:
        """A second Ctrl-C: kill the children now instead of letting each finish in order."""
        for server, _ in self._servers:
            server.force_exit = True
        if self._mlflow is not None:
            self._mlflow.kill()
        for engine_server in [e.server for e in self._engines] + self._engines_starting:
            engine_server.kill()
        for child in multiprocessing.active_children():
            child.kill()

