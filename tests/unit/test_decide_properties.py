"""Properties of decide() over arbitrary states and random mover outcomes.

The table in test_decide.py shows each transition once; these tests throw
states nobody thought of at the core and check the rules that must hold in
every one of them: no delete without every interlock, bounded attempts, at most
one mover per call and only with a slot, at most `concurrency` movers per
target, and a decision that is a fixpoint (asking again changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from decide_support import NAME, NOW, SHA_A, SHA_B, job, target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nassync.api.durations import parse_duration
from nassync.api.mover_io import ErrorKind, MoverResult, Step
from nassync.api.syncjob import Phase, SyncJob
from nassync.api.target import SyncTarget
from nassync.core import interlocks
from nassync.core.actions import Decision
from nassync.core.decide import ChildJob, ChildState, decide
from nassync.core.names import job_name

STEPS: tuple[Step, ...] = ("gate", "push", "verify", "cleanup")
OFFSETS = st.integers(min_value=-3 * 86400, max_value=3 * 86400)
REVOCATIONS = st.sampled_from([None, "2026-11-30T11:00:00Z", "2026-11-01T00:00:00Z", "not-a-time"])


def times() -> st.SearchStrategy[datetime | None]:
    return st.one_of(st.none(), OFFSETS.map(lambda s: NOW + timedelta(seconds=s)))


@st.composite
def results(draw: st.DrawFn, step: Step) -> MoverResult | None:
    """Anything a mover could report for `step`, including nothing at all."""
    extra: dict[str, Any] = {}
    revoked = draw(REVOCATIONS)
    if revoked is not None:
        extra["lastRevocationAt"] = revoked
    verify = {
        "localChanged": draw(st.booleans()),
        "missing": draw(st.integers(0, 3)),
        "differing": draw(st.integers(0, 3)),
    }
    kind = draw(st.sampled_from(["ok", "none", *ErrorKind]))
    if kind == "none":
        return None
    if kind != "ok":
        return MoverResult.model_validate(
            {"step": step, "ok": False, "error": {"kind": kind, "message": "boom"}, "verify": verify, **extra}
        )
    payloads: dict[str, dict[str, Any]] = {
        "gate": {
            "gate": {
                "quiet": draw(st.booleans()),
                "quietRemainingSeconds": draw(st.integers(0, 600)),
                "blocked": draw(st.booleans()),
            }
        },
        "push": {"manifest": {"files": 2, "bytes": 10, "sha256": draw(st.sampled_from([SHA_A, SHA_B]))}},
        "verify": {"verify": verify},
        "cleanup": {"cleanup": {"filesDeleted": 2, "bytesFreed": 10}},
    }
    return MoverResult.model_validate({"step": step, "ok": True, **payloads[step], **extra})


@st.composite
def targets(draw: st.DrawFn) -> SyncTarget:
    return target(
        cleanup={
            "enabled": draw(st.booleans()),
            "minVerifyPasses": draw(st.integers(1, 3)),
            "minAgeAfterVerify": draw(st.sampled_from(["0s", "30m", "24h"])),
            "reverifyInterval": draw(st.sampled_from(["1s", "1h", "6h"])),
        },
        retry={
            "maxAttempts": draw(st.integers(1, 6)),
            "backoffSeconds": draw(st.lists(st.integers(0, 600), min_size=1, max_size=4)),
        },
        concurrency=draw(st.integers(1, 3)),
    )


@st.composite
def states(draw: st.DrawFn) -> tuple[SyncJob, SyncTarget | None, dict[str, ChildJob]]:
    """An arbitrary (job, target, children) triple, consistent enough to load."""
    tgt = draw(st.one_of(st.none(), targets()))
    limit = tgt.spec.retry.max_attempts if tgt else 5
    runs = draw(st.integers(0, 6))
    status: dict[str, Any] = {
        "phase": draw(st.sampled_from(list(Phase))),
        "attempts": draw(st.integers(0, limit)),
        "moverRuns": runs,
        "verifyPasses": draw(st.integers(0, 4)),
        "verifiedAt": draw(times()),
        "lastVerifiedAt": draw(times()),
        "nextAttemptAt": draw(times()),
        "observedGeneration": draw(st.integers(1, 2)),
    }
    revoked = draw(REVOCATIONS)
    if revoked is not None and revoked != "not-a-time":
        status["lastRevocationAt"] = revoked
    if draw(st.booleans()):
        status["manifest"] = {"files": 2, "bytes": 10, "sha256": draw(st.sampled_from([SHA_A, SHA_B]))}
    if draw(st.booleans()):
        status["lastError"] = {"kind": draw(st.sampled_from(list(ErrorKind))), "message": "earlier"}
    children: dict[str, ChildJob] = {}
    if runs and draw(st.booleans()):
        step = draw(st.sampled_from(STEPS))
        name = job_name(syncjob=NAME, step=step, n=runs)
        status["moverJob"] = {
            "name": name,
            "step": step,
            "state": draw(st.sampled_from(["Running", "Succeeded", "Failed"])),
            "startedAt": NOW - timedelta(seconds=draw(st.integers(0, 3600))),
        }
        if draw(st.booleans()):
            children[name] = _child(
                name, step, draw(st.sampled_from(["Running", "Succeeded", "Failed"])), draw(results(step))
            )
    if draw(st.integers(0, 4)) == 0:  # an orphan created before a crash
        step = draw(st.sampled_from(STEPS))
        name = job_name(syncjob=NAME, step=step, n=runs + 1)
        children[name] = _child(
            name, step, draw(st.sampled_from(["Running", "Succeeded", "Failed"])), draw(results(step))
        )
    annotations = {}
    for key in ("nassync.dev/retry", "nassync.dev/verify"):
        if draw(st.booleans()):
            annotations[key] = draw(st.sampled_from(["1", "2"]))
    j = job(
        status=status,
        annotations=annotations,
        generation=draw(st.integers(1, 2)),
        suspend=draw(st.booleans()),
        hold=draw(st.booleans()),
    )
    return j, tgt, children


def _child(name: str, step: Step, state: ChildState, result: MoverResult | None) -> ChildJob:
    return ChildJob(name=name, step=step, state=state, result=result)


def check_invariants(j: SyncJob, tgt: SyncTarget | None, d: Decision, *, slot: bool, now: datetime) -> None:
    """The rules every single decision must obey."""
    creates = d.creates
    assert len(creates) <= 1
    if creates:
        assert slot, "a mover was created without a slot"
        assert tgt is not None and not j.spec.suspend
    if tgt is not None:
        assert d.status.attempts <= tgt.spec.retry.max_attempts
    for create in creates:
        if create.step == "cleanup":
            assert tgt is not None
            policy = tgt.spec.cleanup
            facts = interlocks.CleanupFacts(
                enabled=policy.enabled,
                hold=j.spec.cleanup.hold,
                verify_passes=d.status.verify_passes,
                min_verify_passes=policy.min_verify_passes,
                verified_at=d.status.verified_at,
                min_age_after_verify=parse_duration(policy.min_age_after_verify),
                last_revocation_at=d.status.last_revocation_at,
            )
            assert interlocks.cleanup_allowed(facts, now=now)
            assert policy.enabled and not j.spec.cleanup.hold
            assert d.status.verified_at is not None
            assert now - d.status.verified_at >= timedelta(seconds=parse_duration(policy.min_age_after_verify))
            assert d.status.verify_passes >= policy.min_verify_passes


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(state=states(), slot=st.booleans(), offset=st.integers(0, 2 * 86400))
def test_every_decision_obeys_the_rules(
    state: tuple[SyncJob, SyncTarget | None, dict[str, ChildJob]], slot: bool, offset: int
) -> None:
    j, tgt, children = state
    now = NOW + timedelta(seconds=offset)
    before = j.model_copy(deep=True)
    d = decide(job=j, target=tgt, children=children, slot_available=slot, now=now)
    assert j == before
    check_invariants(j, tgt, d, slot=slot, now=now)
    # Deterministic: the same inputs give the same decision.
    assert decide(job=j, target=tgt, children=children, slot_available=slot, now=now) == d
    # A fixpoint: with its own status and the Job it asked for now Running,
    # asking again creates nothing, says nothing and changes nothing.
    after = dict(children)
    for create in d.creates:
        after[create.name] = ChildJob(name=create.name, step=create.step, state="Running")
    again = decide(
        job=j.model_copy(update={"status": d.status}), target=tgt, children=after, slot_available=slot, now=now
    )
    assert again.creates == ()
    assert again.events == ()
    assert again.status == d.status


@dataclass
class _Sim:
    """A fake shell: one target, k jobs, mover Jobs as a dict of ChildJobs."""

    tgt: SyncTarget
    jobs: list[SyncJob]
    children: dict[str, dict[str, ChildJob]] = field(default_factory=dict)
    now: datetime = NOW
    max_running: int = 0
    requeues: list[float] = field(default_factory=list)

    def running(self) -> int:
        return sum(c.state == "Running" for kids in self.children.values() for c in kids.values())

    def round(self) -> None:
        # FIFO by creation, like the shell; a creation takes the slot at once.
        for i, j in enumerate(self.jobs):
            kids = self.children.setdefault(j.name, {})
            slot = self.running() < self.tgt.spec.concurrency
            d = decide(job=j, target=self.tgt, children=kids, slot_available=slot, now=self.now)
            check_invariants(j, self.tgt, d, slot=slot, now=self.now)
            for create in d.creates:
                kids[create.name] = ChildJob(name=create.name, step=create.step, state="Running")
            self.jobs[i] = j.model_copy(update={"status": d.status})
            if d.requeue_after is not None:
                self.requeues.append(d.requeue_after)
            self.max_running = max(self.max_running, self.running())
            assert self.running() <= self.tgt.spec.concurrency


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tgt=targets(), k=st.integers(1, 4))
def test_simulated_target_never_exceeds_concurrency(data: st.DataObject, tgt: SyncTarget, k: int) -> None:
    sim = _Sim(tgt=tgt, jobs=[job(name=f"run{i}") for i in range(k)])
    for _ in range(data.draw(st.integers(1, 25), label="rounds")):
        sim.round()
        for kids in sim.children.values():
            for name, kid in list(kids.items()):
                if kid.state == "Running" and data.draw(st.booleans(), label=f"finish {name}"):
                    res = data.draw(results(kid.step), label=f"result {name}")
                    state: ChildState = "Succeeded" if res is not None and res.ok else "Failed"
                    kids[name] = ChildJob(name=name, step=kid.step, state=state, result=res)
        sim.now += timedelta(seconds=data.draw(st.sampled_from([1, 60, 3600, 7 * 3600, 25 * 3600]), label="dt"))
    for j in sim.jobs:
        assert j.status.attempts <= tgt.spec.retry.max_attempts
        assert j.status.mover_runs == len(sim.children.get(j.name, {}))


def test_a_lucky_job_reaches_cleaned() -> None:
    """With every mover succeeding and the operator waking when it asked to,
    the default policy (2 passes, 24h) cleans; the reference implementation never did."""
    tgt = target(cleanup={"enabled": True})
    sim = _Sim(tgt=tgt, jobs=[job()])
    good = {
        "gate": MoverResult.model_validate({"step": "gate", "ok": True, "gate": {"quiet": True}}),
        "push": MoverResult.model_validate(
            {"step": "push", "ok": True, "manifest": {"files": 1, "bytes": 1, "sha256": SHA_A}}
        ),
        "verify": MoverResult.model_validate({"step": "verify", "ok": True, "verify": {}}),
        "cleanup": MoverResult.model_validate({"step": "cleanup", "ok": True, "cleanup": {}}),
    }
    for _ in range(40):
        sim.requeues.clear()
        sim.round()
        if sim.jobs[0].status.phase == Phase.CLEANED:
            break
        kids = sim.children[NAME]
        for name, kid in list(kids.items()):
            if kid.state == "Running":
                kids[name] = ChildJob(name=name, step=kid.step, state="Succeeded", result=good[kid.step])
        # Like the shell: wake when the core asked to be woken (a Job's end wakes it at once).
        sim.now += timedelta(seconds=max(1.0, min(sim.requeues, default=1.0)))
    status = sim.jobs[0].status
    assert status.phase == Phase.CLEANED
    assert status.verify_passes == 2
    assert status.verified_at is not None and status.cleaned_at is not None
    assert status.cleaned_at - status.verified_at >= timedelta(hours=24)
