"""The informers' store (controller/cache.py): a relist replaces it and reports deletions; compact storage."""

from __future__ import annotations

from typing import Any

from nassync.controller.cache import Store, slim, target_of


def _job(name: str, rv: int, target: str = "t1", uid: str | None = None) -> Any:
    return {"metadata": {"name": name, "namespace": "lab", "uid": uid or f"u-{name}", "resourceVersion": str(rv),
                         "managedFields": [{"manager": "kubectl"}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "a": "b"}},
            "spec": {"targetRef": {"name": target}}, "status": {"phase": "Cleaned"}}


def test_a_relist_replaces_the_store_and_reports_what_vanished_meanwhile() -> None:
    store = Store(compact=True, index=target_of)
    for obj in (_job("a", 1), _job("b", 2), _job("c", 3, target="t2")):
        store.put(slim(obj))
    changes = store.replace([store.pack(slim(_job("a", 1))), store.pack(slim(_job("c", 9, target="t2")))], "lab")
    assert sorted((old or {}).get("metadata", {}).get("name", "") + ">" + (new or {}).get("metadata", {}).get(
        "name", "-") for old, new in changes) == ["b>-", "c>c"]
    assert [o["metadata"]["name"] for o in store.indexed("lab", "t1")] == ["a"]
    assert [o["metadata"]["name"] for o in store.indexed("lab", "t2")] == ["c"]
    got = store.get("lab", "a")
    assert got is not None and "managedFields" not in got["metadata"]
    assert got["metadata"]["annotations"] == {"a": "b"}


def test_an_older_version_never_overwrites_a_newer_one() -> None:
    store = Store()
    store.put(_job("a", 5))
    _old, stored = store.put(_job("a", 4))
    assert not stored and store.get("lab", "a")["metadata"]["resourceVersion"] == "5"  # type: ignore[index]
    _old, stored = store.put(_job("a", 1, uid="recreated"))
    assert stored, "a re-created object (new uid) replaces the old one"
    assert store.remove("lab", "a") is not None and store.get("lab", "a") is None
