"""The gateway pod's entry point: `python -m aistack.runtime [--host H] [--port P] [--config F]`.

Reads the gateway config from `--config`, `$AISTACK_GATEWAY_CONFIG` or the ConfigMap mount
path, wires the retrieval layer when the config declares one, serves with uvicorn and reloads
the config when the file changes. Also runnable as
`uvicorn --factory aistack.runtime.__main__:app_from_env`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from aistack.api.conventions import GATEWAY_PORT

log = logging.getLogger("aistack.runtime")


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
    from aistack.runtime.gateway import create_app
    from aistack.runtime.gateway.config import config_path_from_env, load_config

    path = config_path or config_path_from_env()
    retriever, embedder = _retrieval(load_config(path))
    return create_app(config_path=path, retriever=retriever, embedder=embedder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the aistack gateway (OpenAI-compatible).")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=GATEWAY_PORT)
    parser.add_argument("--config", type=Path, default=None, help="gateway config YAML (default: $AISTACK_GATEWAY_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per call is a hot-path cost
    import uvicorn

    from aistack.runtime.gateway.config import ConfigError

    try:
        app = app_from_env(args.config)
    except (ConfigError, ValueError) as err:
        log.error("the gateway cannot start: %s", err)
        raise SystemExit(2) from None
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False,
                timeout_graceful_shutdown=30)


if __name__ == "__main__":
    main(sys.argv[1:])
