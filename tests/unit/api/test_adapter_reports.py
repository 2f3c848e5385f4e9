"""The adapter agents' reports on the Lease and the operator's sum of them: per adapter Failed where
one pod failed (with its reason and pod), Loaded where every reporting pod holds it, stale reports
left out; an Event per change of phase or reason, none without one."""

from __future__ import annotations

from aistack.api.adapters import (
    REPORT_TTL_SECONDS,
    AdapterReport,
    AdapterState,
    adapter_events,
    adapter_statuses,
    decode_report,
    encode_report,
    report_key,
)


def report(*states: tuple[str, str] | tuple[str, str, str]) -> AdapterReport:
    return AdapterReport(adapters=[AdapterState(name=s[0], source="x", phase=s[1],  # type: ignore[arg-type]
                                                reason=s[2] if len(s) > 2 else None) for s in states])


def annotations(now: float, **pods: AdapterReport) -> dict[str, str]:
    return {report_key(pod): encode_report(r, at=now) for pod, r in pods.items()}


def test_a_report_round_trips_compactly_and_junk_is_ignored() -> None:
    text = encode_report(report(("a", "Loaded"), ("b", "Failed", "rank 64")), at=100.0)
    assert text == '{"at":100.0,"adapters":[["a","Loaded"],["b","Failed","rank 64"]]}'
    at, back = decode_report(text) or (0, None)
    assert at == 100.0 and back is not None and [(s.name, s.phase, s.reason) for s in back.adapters] == [
        ("a", "Loaded", None), ("b", "Failed", "rank 64")]
    for junk in ("", "{}", '{"at": "x", "adapters": []}', '{"at": 1, "adapters": [["a", "Sleeping"]]}',
                 '{"at": NaN, "adapters": []}'):
        assert decode_report(junk) is None
    assert report_key("tuned-model-5d8f9-x2k4q") == "adapters.aistack.dev/tuned-model-5d8f9-x2k4q"
    assert len(report_key("p" * 300).split("/", 1)[1]) == 63


def test_statuses_sum_the_fresh_reports_per_adapter_in_the_lists_order() -> None:
    now = 10_000.0
    notes = {**annotations(now, pod1=report(("a", "Loaded"), ("b", "Loaded"), ("c", "Downloading")),
                           pod2=report(("a", "Loaded"), ("b", "Failed", "refused"), ("c", "Loaded"))),
             **annotations(now - REPORT_TTL_SECONDS - 1, gone=report(("d", "Failed", "old"))),
             "load.aistack.dev/gw-1": '{"demand": 3}'}
    out = adapter_statuses(notes, ["c", "b", "a", "d"], now=now)
    assert [(s.name, s.phase, s.replicas, s.reason) for s in out] == [
        ("c", "Downloading", 1, None), ("b", "Failed", 1, "refused (pod pod2)"), ("a", "Loaded", 2, None),
        ("d", "Pending", 0, None)]


def test_an_event_for_each_change_and_none_without_one() -> None:
    now = 10_000.0
    first = adapter_statuses(annotations(now, p=report(("a", "Downloading"), ("b", "Loaded"))), ["a", "b"],
                             now=now)
    assert adapter_events([], first) == [("Normal", "AdapterDownloading", "adapter a: downloading"),
                                         ("Normal", "AdapterLoaded", "adapter b loaded on 1 replica")]
    written = [s.model_dump(exclude_none=True) for s in first]
    assert adapter_events(written, first) == []
    second = adapter_statuses(annotations(now, p=report(("a", "Failed", "pull: not found"))), ["a"], now=now)
    assert adapter_events(written, second) == [
        ("Warning", "AdapterFailed", "adapter a: pull: not found (pod p)"),
        ("Normal", "AdapterRemoved", "adapter b left the list: unloaded")]
