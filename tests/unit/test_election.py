"""Leader election rules (controller/election.py) against an in-memory Lease with resourceVersions."""

from __future__ import annotations

import copy
from typing import Any

from nassync.controller.election import ElectionConfig, LeaderElector


class FakeLeases:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    def create(self, namespace: str, body: dict[str, Any]) -> bool:
        if self.lease is not None:
            return False
        self.rv += 1
        self.lease = {**copy.deepcopy(body), "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}
        return True

    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        assert self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            return False
        self.rv += 1
        self.lease = {**copy.deepcopy(body), "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pair() -> tuple[FakeLeases, Clock, LeaderElector, LeaderElector]:
    api, clock = FakeLeases(), Clock()
    a = LeaderElector(api, ElectionConfig(namespace="ops", identity="a"), clock=clock)
    b = LeaderElector(api, ElectionConfig(namespace="ops", identity="b"), clock=clock)
    return api, clock, a, b


def test_exactly_one_of_two_candidates_leads() -> None:
    api, _clock, a, b = _pair()
    assert a.try_acquire_or_renew() and a.is_leader()
    assert not b.try_acquire_or_renew() and not b.is_leader()
    assert api.lease is not None and api.lease["spec"]["holderIdentity"] == "a"


def test_a_standby_takes_over_only_after_the_lease_went_unrenewed_for_its_duration() -> None:
    api, clock, a, b = _pair()
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()  # observes a's record now
    clock.now += 14
    assert not b.try_acquire_or_renew(), "a's lease is still live on b's own clock"
    assert not a.is_leader(), "a stopped acting at its renew deadline (10 s), before b may take over"
    clock.now += 2
    assert b.try_acquire_or_renew() and b.is_leader()
    assert api.lease is not None and api.lease["spec"]["leaseTransitions"] == 1


def test_renewals_keep_the_leader_and_a_live_renewal_keeps_the_standby_out() -> None:
    _api, clock, a, b = _pair()
    for _ in range(10):
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        clock.now += 5
    assert a.is_leader() and not b.is_leader()


def test_two_racing_takeovers_cannot_both_win() -> None:
    api, clock, a, b = _pair()
    a.try_acquire_or_renew()
    c = LeaderElector(api, ElectionConfig(namespace="ops", identity="c"), clock=clock)
    b.try_acquire_or_renew()
    c.try_acquire_or_renew()
    clock.now += 20
    stale = api.get("ops", "nassync-operator")
    assert b.try_acquire_or_renew()
    assert stale is not None and not api.replace("ops", "nassync-operator", stale), "resourceVersion guards"
    assert not c.try_acquire_or_renew()


def test_release_hands_over_at_once() -> None:
    _api, clock, a, b = _pair()
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    a.release()
    assert not a.is_leader()
    clock.now += 1.5
    assert b.try_acquire_or_renew(), "a released lease (1 s) is taken without waiting 15 s"
