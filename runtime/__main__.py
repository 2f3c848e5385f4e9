"""The gateway pod's entry point:
`python -m aistack.runtime [--host H] [--port P] [--config F] [--workers N]`.

Reads the gateway config from `--config`, `$AISTACK_GATEWAY_CONFIG` or the ConfigMap mount
path, wires the retrieval layer when the config declares one, serves with uvicorn (uvloop and
httptools: the cheapest event loop and HTTP parser it offers) and reloads the config when the
file changes. Also runnable as `uvicorn --factory aistack.runtime.__main__:app_from_env`.

One worker process by default (`--workers` or `$AISTACK_GATEWAY_WORKERS` to change it): in
Kubernetes the HorizontalPodAutoscaler adds pods on CPU, so a pod is one process whose CPU
request is what it uses, and whose `/metrics` and trace exporter describe every request it
served (each worker has its own registry: with several, a scrape sees one worker's share).
Several workers pay off where one machine serves alone, with more than one core for it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aistack.api.conventions import GATEWAY_CONFIG_ENV, GATEWAY_PORT

log = logging.getLogger("aistack.runtime")
WORKERS_ENV = "AISTACK_GATEWAY_WORKERS"


def _retrieval(config: Any) -> tuple[Any, Any]:
    """(retriever, embedder) from the retrieval layer, or (None, None) when none is declared."""
    if config.retrieval is None:
        return None, None
    try:
        from aistack.runtime.retrieval.factory import build_embedder, build_retriever
    except ImportError as err:
        log.error("the config declares retrieval but the retrieval layer is not installed (%s); "
                  "chat requests will answer 503 until it is", err)
        return None, None
    retriever = build_retriever(config.retrieval)
    embedder = getattr(retriever, "embedder", None) or build_embedder(config.retrieval.embedder)
    return retriever, embedder


def app_from_env(config_path: Path | None = None) -> Any:
    """The app for the config file (watched for changes), with the retrieval layer wired."""
    from aistack.runtime.core.config import config_path_from_env, load_config
    from aistack.runtime.gateway import create_app

    path = config_path or config_path_from_env()
    retriever, embedder = _retrieval(load_config(path))
    return create_app(config_path=path, retriever=retriever, embedder=embedder)


async def _open_and_close(app: Any) -> None:
    async with app.router.lifespan_context(app):
        pass


def _workers(value: str) -> int:
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise argparse.ArgumentTypeError(
            f"workers (--workers or ${WORKERS_ENV}) must be a whole number >= 1, got {value!r}")
    return workers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the aistack gateway (OpenAI-compatible).")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=GATEWAY_PORT)
    parser.add_argument("--config", type=Path, default=None,
                        help="gateway config YAML (default: $AISTACK_GATEWAY_CONFIG)")
    parser.add_argument("--workers", type=_workers, default=os.environ.get(WORKERS_ENV, "1"),
                        help=f"server processes (default: ${WORKERS_ENV} or 1; "
                             "in Kubernetes scale replicas instead)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per call is a hot-path cost
    import uvicorn

    from aistack.runtime.core.config import ConfigError

    server = {"host": args.host, "port": args.port, "log_level": "info", "access_log": False,
              "loop": "uvloop", "http": "httptools", "timeout_graceful_shutdown": 30}
    try:
        app = app_from_env(args.config)
    except (ConfigError, ValueError) as err:
        log.error("the gateway cannot start: %s", err)
        raise SystemExit(2) from None
    if args.workers == 1:
        uvicorn.run(app, **server)
        return
    asyncio.run(_open_and_close(app))  # built and started once, so the workers will start too
    del app  # each worker builds its own from the same file
    if args.config is not None:
        os.environ[GATEWAY_CONFIG_ENV] = str(args.config.resolve())
    uvicorn.run("aistack.runtime.__main__:app_from_env", factory=True, workers=args.workers, **server)


if __name__ == "__main__":
    main(sys.argv[1:])
