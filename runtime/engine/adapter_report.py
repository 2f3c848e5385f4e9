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
import time
from pathlib import Path

import httpx

from aistack.api.adapters import HEARTBEAT_SECONDS, AdapterReport, encode_report, report_key
from aistack.runtime.core.kube_api import TOKEN_DIR, LeasePatch, pod_name

log = logging.getLogger("aistack.adapters")


class LeaseWriter:
    """Publishes one agent's report; failures are logged once and retried on the next pass."""

    def __init__(self, *, api: str, namespace: str, lease: str, pod: str | None = None,
                 token_dir: Path = TOKEN_DIR, heartbeat_s: float = HEARTBEAT_SECONDS) -> None:
        self.lease = LeasePatch(api=api, namespace=namespace, lease=lease, token_dir=token_dir)
        self.url = self.lease.url
        self.key = report_key(pod_name(pod))
        self.heartbeat_s = heartbeat_s
        self.written: AdapterReport | None = None
        self.written_at = -1e18
        self.failing = False
        self.http = httpx.Client(timeout=5.0, verify=self.lease.tls())

    def publish(self, report: AdapterReport) -> None:
        """Write `report` if it changed, or the heartbeat is due."""
        if report == self.written and time.monotonic() - self.written_at < self.heartbeat_s:
            return
        body = self.lease.body(self.key, encode_report(report, at=time.time()))
        try:
            response = self.http.patch(self.url, json=body, headers=self.lease.headers())
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
