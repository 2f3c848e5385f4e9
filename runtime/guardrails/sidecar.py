"""The guardrails sidecar: NeMo Guardrails' server with a config generated from the gateway's.

The operator runs it next to the gateway in the same pod:

    command: ["python", "-m", "aistack.runtime.guardrails.sidecar"]
    args:    ["--port", "8001"]                 # conventions.GUARDRAILS_PORT
    env:     AISTACK_GATEWAY_CONFIG=/etc/aistack/gateway/config.yaml (the same ConfigMap mount)
             HF_HUB_OFFLINE=1, plus the model API key env var named in the config, if any
    volume:  a writable emptyDir at /tmp (the generated config is written to --out)

It reads the gateway config, writes `<out>/<configId>/config.yml` (self-check rails, policy
prompts, the offline SentenceTransformers embeddings) and serves it with NeMo's own FastAPI
app on 127.0.0.1 only: the gateway talks to it over the pod's loopback, so it is never exposed
on the Service. `--nemo-config DIR` serves a complete NeMo config folder instead
(`guardrails.configMapRef`). Health: `GET /v1/rails/configs`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from aistack.api.conventions import GUARDRAILS_PORT

log = logging.getLogger("aistack.guardrails_sidecar")


def prepare(*, config_path: Path, out: Path) -> tuple[Path, str]:
    """Write the NeMo config for the gateway config at `config_path`; (config root, config id)."""
    from aistack.runtime.core.config import load_config
    from aistack.runtime.guardrails.nemo_config import write_nemo_config

    config = load_config(config_path)
    if config.guardrails is None:
        raise SystemExit(f"{config_path} declares no guardrails: this sidecar has nothing to serve")
    write_nemo_config(config, out)
    return out, config.guardrails.config_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None,
                        help="gateway config file (default: $AISTACK_GATEWAY_CONFIG or the pod mount path)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/aistack-guardrails"),
                        help="where the generated NeMo config is written")
    parser.add_argument("--nemo-config", type=Path, default=None,
                        help="serve this complete NeMo config folder instead of generating one")
    parser.add_argument("--config-id", default="aistack", help="config id when --nemo-config is given")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=GUARDRAILS_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per call is a hot-path cost
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NEMO_GUARDRAILS_DISABLE_CHAT_UI", "true")
    if args.nemo_config is not None:
        root, config_id = args.nemo_config, args.config_id
    else:
        from aistack.runtime.core.config import config_path_from_env

        root, config_id = prepare(config_path=args.config or config_path_from_env(), out=args.out)
    import uvicorn
    from nemoguardrails.server import api

    api.app.rails_config_path = str(root).rstrip(os.path.sep)
    api.set_default_config_id(config_id)
    log.info("serving NeMo Guardrails config %r from %s on %s:%d", config_id, root, args.host, args.port)
    uvicorn.run(api.app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
