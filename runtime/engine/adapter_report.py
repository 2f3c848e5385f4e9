"""The adapter agent's report on the Lease `<stack>-model-adapters` (`aistack.api.adapters`): one
annotation per pod, written with a merge patch on each change and every `HEARTBEAT_SECONDS`, with
the pod's projected service account token (re-read each time: the kubelet rotates it). The pod's
only right is `patch` on that one Lease; the operator hears each write through its watch of the
stack's children and turns the reports into `status.model.adapters` and Events.

(The gateway's `LeaseReporter` writes the load Lease the same way, on its async HTTP session; the
agent is synchronous, and runtime layers keep the engine's code out of the gateway's.)
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from pathlib import Path

import httpx

from aistack.api.adapters import HEARTBEAT_SECONDS, AdapterReport, encode_report, report_key
from aistack.runtime.core.kube_api import TOKEN_DIR

log = logging.getLogger("aistack.adapters")


class LeaseWriter:
    """Publishes one agent's report; failures are logged once and retried on the next pass."""

    def __init__(self, *, api: str, namespace: str, lease: str, pod: str | None = None,
                 token_dir: Path = TOKEN_DIR, heartbeat_s: float = HEARTBEAT_SECONDS) -> None:
        self.url = f"{api}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease}"
        self.key = report_key(pod or os.environ.get("HOSTNAME") or socket.gethostname())
        self.token_dir = token_dir
        self.heartbeat_s = heartbeat_s
        self.written: AdapterReport | None = None
        self.written_at = -1e18
        self.failing = False
        ca = token_dir / "ca.crt"
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca.is_file() else True
        self.http = httpx.Client(timeout=5.0, verify=verify if self.url.startswith("https://") else False)

    def publish(self, report: AdapterReport) -> None:
        """Write `report` if it changed, or the heartbeat is due."""
        if report == self.written and time.monotonic() - self.written_at < self.heartbeat_s:
            return
        body = {"metadata": {"annotations": {self.key: encode_report(report, at=time.time())}}}
        headers = {"Content-Type": "application/merge-patch+json"}
        try:
            token = (self.token_dir / "token").read_text(encoding="utf-8").strip()
        except OSError:
            token = ""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = self.http.patch(self.url, json=body, headers=headers)
            ok, detail = response.status_code < 300, response.text[:200]
        except httpx.HTTPError as err:
            ok, detail = False, f"{type(err).__name__}: {err}"
        if ok:
            self.written, self.written_at = report, time.monotonic()
            if self.failing:
                log.info("reporting the adapters' state works again")
            self.failing = False
        elif not self.failing:
            log.warning("could not report the adapters' state on %s (%s); retrying", self.url, detail)
            self.failing = True

    def close(self) -> None:
        self.http.close()
