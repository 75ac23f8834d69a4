"""The agent's tracker and outbox: deltas only on change, coalesced per object, bounded memory."""

from contract.protocol import Delta, decode_batch, digest_of
from agent.report import Outbox, Tracker
from agent.summaries import application, pod


def test_tracker_reports_changes_only():
    tracker = Tracker()
    first = tracker.observe("Pod", "shop", "web-1", {"phase": "Running"})
    assert first is not None and first.digest == digest_of({"phase": "Running"})
    assert tracker.observe("Pod", "shop", "web-1", {"phase": "Running"}) is None
    assert tracker.observe("Pod", "shop", "web-1", {"phase": "Failed"}).state == {"phase": "Failed"}
    deleted = tracker.observe("Pod", "shop", "web-1", None)
    assert deleted.state is None and deleted.digest is None and len(tracker) == 0
    assert tracker.observe("Pod", "shop", "web-1", None) is None  # deleting twice says nothing


def test_relist_forgets_objects_that_are_gone():
    tracker = Tracker()
    for name in ("a", "b", "c"):
        tracker.observe("Deployment", "shop", name, {"ready": 1})
    tracker.observe("Pod", "shop", "a-1", {"phase": "Running"})
    gone = tracker.forget_kind("Deployment", [Delta("Deployment", "shop", "b", {}).key])
    assert sorted(d.name for d in gone) == ["a", "c"] and all(d.state is None for d in gone)
    assert sorted(str(d.key) for d in tracker.snapshot()) == ["Deployment/shop/b", "Pod/shop/a-1"]


def test_outbox_keeps_the_newest_delta_per_object_however_many_changes():
    outbox = Outbox()
    for i in range(10_000):
        outbox.put(Delta("Pod", "shop", f"web-{i % 100}", {"restarts": i}))
    assert len(outbox) == 100
    taken = outbox.take(1000)
    assert {d.name: d.state["restarts"] for d in taken}["web-7"] == 9907
    assert len(outbox) == 0 and not outbox.changed.is_set()


def test_pod_summary_names_the_reasons_users_look_for():
    raw = {
        "metadata": {"name": "web-1", "labels": {"shipyard.dev/app": "web"}, "resourceVersion": "9"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "web", "ready": False, "restartCount": 4,
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
             "lastState": {"terminated": {"reason": "OOMKilled"}}},
        ]},
    }
    state = pod(raw)
    assert state["reasons"] == ["CrashLoopBackOff", "OOMKilled"] and state["restarts"] == 4
    assert state["app"] == "web" and state["ready"] is False and state["message"] == "back-off 40s"
    raw["metadata"]["resourceVersion"] = "10"  # churn that means nothing keeps the digest
    assert digest_of(pod(raw)) == digest_of(state)


def test_application_summary_names_the_revision_of_the_last_sync_operation():
    """ArgoCD keeps the last operation's state after it compares a newer revision: the summary says
    which revision that operation synced (its syncResult's, else the one the operation asked for)."""
    def summary(operation_state: dict) -> dict:
        return application({"metadata": {"name": "shop.web", "labels": {}},
                            "status": {"sync": {"status": "OutOfSync", "revision": "c3"},
                                       "health": {"status": "Healthy"}, "operationState": operation_state}})

    failed = summary({"phase": "Failed", "operation": {"sync": {"revision": "c2"}}, "syncResult": {"revision": "c2"}})
    assert (failed["revision"], failed["operation"], failed["operation_revision"]) == ("c3", "Failed", "c2")
    assert summary({"phase": "Running", "operation": {"sync": {"revision": "c3"}}})["operation_revision"] == "c3"
    assert summary({"phase": "Succeeded"})["operation_revision"] is None


def test_batches_are_checked_on_the_way_in():
    good = {"stream": "s", "seq": 1, "snapshot": True, "deltas": [
        {"kind": "Pod", "namespace": "shop", "name": "a", "state": {"phase": "Running"}}]}
    assert decode_batch(good).deltas[0].digest == digest_of({"phase": "Running"})
    for bad in ({**good, "seq": 0}, {**good, "deltas": [{"kind": "Secret", "namespace": "x", "name": "y"}]},
                {**good, "deltas": [{"kind": "Pod", "namespace": "x", "name": "y", "state": [1]}]},
                {"stream": "s"}):
        try:
            decode_batch(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
