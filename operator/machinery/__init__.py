"""The operator's private plumbing, kept apart from what it reconciles (as kopf keeps its own).

- `queue.py`: `WorkQueue`, a keyed work queue around one `reconcile(key)` callable: one run
  at a time per key, triggers coalesced and debounced, a drift pass spread over an interval.
- `listwatch.py`: `ListWatch`, the API server's list+watch protocol for in-memory caches.
- `peering.py`: kopf peering applied to the triggers kopf does not start (`PeeringWatch`).
- `leader.py`: leader election between replicas through a Lease (`LeaderElection`).

Nothing here knows what an AIStack renders to, nor how one is reconciled: the operator's own
modules (`handlers.py`, `runner.py`, `watch.py`) give the machinery its callables and kinds.
`tests/unit/operator/machinery/test_imports.py` holds these modules to that.
"""
