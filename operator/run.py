"""Start the operator: cluster credentials, namespace scoping, liveness, peering.

`python -m aistack.operator` and `aistack operator` both end here. Credentials are loaded
explicitly (in-cluster service account, else `--kubeconfig`, $KUBECONFIG or ~/.kube/config) into
one Configuration shared by kopf and the operator's own client, never from import-time globals;
without a usable one, start-up stops with one line saying what was tried (ClusterConfigError).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import threading
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import yaml
from aiohttp import web
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from aistack.api.conventions import PEERING_NAME
from aistack.api.operator_flags import OperatorFlags
from aistack.api.types import DNS1123_LABEL, DNS1123_SUBDOMAIN
from aistack.operator.handlers import build_registry, build_settings
from aistack.operator.kube import Kube, with_retries
from aistack.operator.machinery.leader import LeaderElection, LeaseOptions, lease_namespace
from aistack.operator.machinery.peering import PeeringOptions
from aistack.operator.options import OperatorOptions

log = logging.getLogger("aistack.operator")


class ClusterConfigError(ValueError):
    """No usable cluster configuration. One line: each source tried and what it lacks."""


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"


def kube_configuration(*, kubeconfig: str | None = None, context: str | None = None) -> Configuration:
    """In a pod (service account present and no kubeconfig named): in-cluster; else `--kubeconfig`,
    else $KUBECONFIG, else ~/.kube/config. Raises ClusterConfigError naming what was tried."""
    configuration = Configuration()
    env = os.environ.get("KUBECONFIG")
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not env:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except kube_config.ConfigException as err:
            raise ClusterConfigError(
                f"no usable cluster configuration: tried the in-cluster service account "
                f"(KUBERNETES_SERVICE_HOST is set): {_in_cluster_gap(err)}; $KUBECONFIG is unset and no "
                "--kubeconfig PATH was given. Mount the service account token (automountServiceAccountToken) "
                "or pass --kubeconfig PATH") from None
        return with_retries(configuration)
    if kubeconfig is not None:
        tried, value = f"--kubeconfig {kubeconfig}", kubeconfig
    elif env:
        tried, value = f"$KUBECONFIG={env}", env
    else:
        tried, value = f"{DEFAULT_KUBECONFIG} (no $KUBECONFIG, no --kubeconfig PATH)", DEFAULT_KUBECONFIG
    not_in_pod = "" if os.environ.get("KUBERNETES_SERVICE_HOST") else (
        "the in-cluster service account (not in a pod: KUBERNETES_SERVICE_HOST is unset), then ")
    missing = [p for p in value.split(os.pathsep) if p and not Path(p).expanduser().is_file()]
    if missing:
        raise ClusterConfigError(f"no usable cluster configuration: tried {not_in_pod}{tried}: no such file "
                                 f"{', '.join(missing)}. Pass --kubeconfig PATH or set KUBECONFIG")
    try:
        kube_config.load_kube_config(config_file=value, context=context, client_configuration=configuration)
    except (kube_config.ConfigException, yaml.YAMLError, OSError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ClusterConfigError(f"no usable cluster configuration: tried {not_in_pod}{tried}: {reason}. "
                                 "Pass --kubeconfig PATH to a kubeconfig with a current context") from None
    return with_retries(configuration)


def _in_cluster_gap(err: Exception) -> str:
    """What the pod lacks, in the words of its manifest; else the client's own reason."""
    if not os.environ.get("KUBERNETES_SERVICE_PORT"):
        return "KUBERNETES_SERVICE_PORT is unset"
    for name in ("token", "ca.crt"):
        if not (SERVICE_ACCOUNT_DIR / name).is_file():
            return f"{SERVICE_ACCOUNT_DIR / name} is missing (the service account token is not mounted)"
    return " ".join(str(err).split())


@dataclass(frozen=True, kw_only=True)
class Startup:
    """What `run` is called with, checked from the flags."""

    options: OperatorOptions
    namespaces: list[str]
    liveness: str | None
    verbose: bool


def startup(flags: OperatorFlags) -> Startup:
    """The flags of either entry point, checked. Raises ValueError naming the flag."""
    namespaces, liveness = check_namespaces(flags.namespace), check_liveness(flags.liveness)
    options = operator_options(kubeconfig=flags.kubeconfig, drift_interval=flags.drift_interval,
                               standalone=flags.standalone, priority=flags.priority, peering=flags.peering,
                               leader_elect=flags.leader_elect,
                               leader_namespace=flags.leader_election_namespace)
    return Startup(options=options, namespaces=namespaces, liveness=liveness, verbose=flags.verbose)


def operator_options(*, kubeconfig: str | None, drift_interval: float, standalone: bool, priority: int,
                     peering: str | None, leader_elect: bool,
                     leader_namespace: str | None) -> OperatorOptions:
    """The options of `python -m aistack.operator` and `aistack operator` (`OperatorFlags`).
    Raises ValueError, naming the flag, for options that do not fit together (a named peering and
    --standalone; a leader election without a namespace for its Lease) or a bad value."""
    leader = None
    if standalone and peering is not None:
        raise ValueError(f"--peering {peering}: cannot be combined with --standalone (one asks for a named "
                         "peering, the other for none); pass one of them")
    peering_options = None if standalone else peering_of(peering, priority=priority)
    if leader_elect:
        namespace = lease_namespace(leader_namespace)
        if not namespace:
            raise ValueError("--leader-elect: no namespace for the Lease; pass --leader-election-namespace "
                             "(in a pod it is read from POD_NAMESPACE or the service account)")
        leader = LeaseOptions(namespace=namespace)
    if drift_interval <= 0:
        raise ValueError(f"--drift-interval: must be > 0 seconds, got {drift_interval}")
    return OperatorOptions(configuration=kube_configuration(kubeconfig=kubeconfig),
                           drift_interval=drift_interval,
                           peering=peering_options, leader=leader)


def peering_of(name: str | None, *, priority: int) -> PeeringOptions:
    """`--peering NAME` asks for that peering object and waits for it (kopf's mandatory peering,
    as the install runs); without it, peering is optional: the `aistack` object counts where it
    exists. Raises ValueError for a NAME that cannot name a Kubernetes object."""
    if name is None:
        return PeeringOptions(priority=priority)
    if not re.fullmatch(DNS1123_SUBDOMAIN, name) or len(name) > 253:
        raise ValueError(f"--peering: {name!r} is not an object name (lower-case letters, digits, '-' "
                         f"and '.'); the install's peering object is {PEERING_NAME!r}")
    return PeeringOptions(name=name, priority=priority, mandatory=True)


def check_namespaces(namespaces: Sequence[str]) -> list[str]:
    """The `--namespace` values, each a namespace name (the caches watch each by its URL: kopf's
    glob patterns are not supported), without repeats. Raises ValueError naming the flag."""
    out: list[str] = []
    for namespace in namespaces:
        if not re.fullmatch(DNS1123_LABEL, namespace) or len(namespace) > 63:
            raise ValueError(f"--namespace: {namespace!r} is not a namespace name (lower-case letters, "
                             "digits and '-', at most 63; patterns are not supported)")
        if namespace not in out:
            out.append(namespace)
    return out


def check_liveness(url: str | None) -> str | None:
    """The `--liveness` URL (`http://HOST:PORT/PATH`), or None for none. Raises ValueError."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"--liveness: {url!r} is not http://HOST:PORT/PATH (or empty for no probe)")
    return url


def run(*, options: OperatorOptions, namespaces: Sequence[str] = (), liveness: str | None = None,
        verbose: bool = False) -> None:
    """Run until SIGTERM. With `namespaces`, only those are watched (a Role per namespace
    suffices); otherwise the whole cluster. With `options.leader`, replicas elect one leader
    through a Lease and only it runs (leader.py); with `options.peering`, operators that share
    the peering pause all but the highest priority one (kopf peering, which also gates the
    operator's own triggers: see peering.py). Exits 1 when leadership is lost."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # one INFO line per handler call and object adds up to real CPU at scale
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        asyncio.run(serve(options=options, namespaces=namespaces, liveness=liveness))
    except LeadershipLost as err:
        log.error("%s; exiting to start over as a follower", err)
        raise SystemExit(1) from err


class LeadershipLost(RuntimeError):
    pass


async def serve(*, options: OperatorOptions, namespaces: Sequence[str] = (), liveness: str | None = None,
                registry: kopf.OperatorRegistry | None = None, settings: kopf.OperatorSettings | None = None,
                stop_flag: threading.Event | None = None, ready_flag: threading.Event | None = None) -> None:
    """The operator in the running loop: wait for the Lease if leader election is on, then run
    kopf (with `registry`, else a fresh one) until `stop_flag` is set, SIGTERM, or lost
    leadership (`LeadershipLost`)."""
    if registry is None:
        registry, _ = build_registry(options, namespaces=namespaces)
    stop = asyncio.Event()
    bridge = asyncio.create_task(_follow_flag(stop_flag, stop)) if stop_flag is not None else None
    try:
        election = None
        if options.leader is not None:
            election = LeaderElection(Kube(ApiClient(options.configuration)), options.leader,
                                      options.identity)
            async with _follower_liveness(liveness), _stop_on_signals(stop):
                if not await _until(election.acquire(), stop):
                    return
        await _run_kopf(options, namespaces, liveness, registry, settings or build_settings(), stop,
                        ready_flag,
                        election)
    finally:
        if bridge is not None:
            bridge.cancel()


async def _run_kopf(options: OperatorOptions, namespaces: Sequence[str], liveness: str | None,
                    registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings, stop: asyncio.Event,
                    ready_flag: threading.Event | None, election: LeaderElection | None) -> None:
    operator = asyncio.create_task(kopf.operator(
        registry=registry, settings=settings, clusterwide=not namespaces, namespaces=list(namespaces),
        liveness_endpoint=liveness, stop_flag=stop, ready_flag=ready_flag, **kopf_peering(options, settings)))
    if election is None:
        await operator
        return
    kept = asyncio.create_task(election.keep())
    try:
        done, _ = await asyncio.wait({operator, kept}, return_when=asyncio.FIRST_COMPLETED)
        if kept in done:
            stop.set()
            await operator
            raise LeadershipLost(f"lost the Lease {election.options.namespace}/{election.options.name}")
        await operator
    finally:
        kept.cancel()
        await asyncio.gather(kept, return_exceptions=True)
        await asyncio.to_thread(election.release)


async def _until(work: Any, stop: asyncio.Event) -> bool:
    """Await `work` unless `stop` is set first: True when the work finished."""
    task, stopped = asyncio.ensure_future(work), asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopped):
        pending.cancel()
    await asyncio.gather(task, stopped, return_exceptions=True)
    return task.done() and not task.cancelled() and task.exception() is None


async def _follow_flag(flag: threading.Event, stop: asyncio.Event) -> None:
    while not flag.is_set():
        await asyncio.sleep(0.05)
    stop.set()


@contextlib.asynccontextmanager
async def _stop_on_signals(stop: asyncio.Event) -> AsyncIterator[None]:
    """SIGTERM/SIGINT while following: stop (kopf installs its own handlers once it runs)."""
    loop = asyncio.get_running_loop()
    handled = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _follower_liveness(liveness: str | None) -> AsyncIterator[None]:
    """A follower is alive while it waits for the Lease: answer the liveness probe until kopf
    (which serves it once leading) takes the port over."""
    if not liveness:
        yield
        return
    url = urllib.parse.urlsplit(liveness)

    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"leader": False})

    app = web.Application()
    app.router.add_get(url.path or "/", alive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, url.hostname, url.port or 80, reuse_address=True).start()
    try:
        yield
    finally:
        await runner.cleanup()


def kopf_peering(options: OperatorOptions, settings: kopf.OperatorSettings) -> dict[str, Any]:
    """kopf's peering arguments, from the same options the operator's own peering watch uses
    (one identity for both, so neither takes the other's keep-alive for a peer). The name goes
    into `settings`: kopf's `peering_name` argument would also make the peering mandatory, and
    kopf then pauses while the peering CRD is missing, where optional peering runs without."""
    peering = options.peering
    if peering is None:
        return {"standalone": True, "identity": options.identity}
    settings.peering.name = peering.name
    settings.peering.mandatory = peering.mandatory
    return {"standalone": False, "priority": peering.priority, "identity": options.identity}
