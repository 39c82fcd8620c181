"""Pre-sync gate: each rule firing and not firing, overrides, quiet period.

The lab app's rule ids fire exactly where the lab app (ExLabWizard) fires
them, so that its overrides lift the same findings (docs/troubleshooting.md).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nassync.api.mover_io import Finding, GateOutcome, MoverParams
from nassync.mover import rules as gate_rules
from nassync.mover.overrides import latest_revocation
from nassync.mover.steps.gate import run_gate

CACHE = ".exlab-wizard"
RUN = "PROJ-0001/Runs/Run_2026-11-28T10-15"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD = (NOW - timedelta(hours=2)).timestamp()


def params(source: Path, **extra: Any) -> MoverParams:
    return MoverParams.model_validate(
        {
            "step": "gate",
            "sourceRoot": str(source),
            "runPath": RUN,
            "cacheDirName": CACHE,
            "destination": {"type": "rclone", "remote": "nas", "path": "/x", "configFile": "/c"},
            **extra,
        }
    )


def age_tree(root: Path, mtime: float = OLD) -> None:
    """Make the whole tree look untouched for two hours (no sleeping in tests)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)
    os.utime(root, (mtime, mtime))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    run = tmp_path / "source" / RUN
    (run / "raw").mkdir(parents=True)
    (run / "raw" / "image_0001.tif").write_bytes(b"pixels")
    (run / "notes.txt").write_bytes(b"ok")
    return tmp_path / "source"


def check(source: Path, **extra: Any) -> GateOutcome:
    age_tree(source / RUN)
    return run_gate(params(source, **extra), now=NOW)


def check_untouched(source: Path, **extra: Any) -> GateOutcome:
    """The gate without ageing the tree first (for trees os.walk cannot reach)."""
    return run_gate(params(source, **extra), now=NOW)


def rules(outcome: GateOutcome) -> set[str]:
    return {f.rule for f in outcome.findings}


def only(outcome: GateOutcome, rule: str) -> Finding:
    matching = [f for f in outcome.findings if f.rule == rule]
    assert len(matching) == 1, outcome.findings
    return matching[0]


def test_clean_run_passes(source: Path) -> None:
    outcome = check(source)
    assert (outcome.quiet, outcome.findings, outcome.blocked) == (True, [], False)
    owner = (source / RUN).stat()
    assert outcome.run_owner is not None and (outcome.run_owner.uid, outcome.run_owner.gid) == (owner.st_uid,
                                                                                               owner.st_gid)


def test_missing_run_is_hard_and_not_overridable(tmp_path: Path) -> None:
    overrides = [{"rule": "run_missing", "reason": "please"}]
    outcome = run_gate(params(tmp_path, overrides=overrides), now=NOW)
    assert outcome.blocked
    finding = only(outcome, "run_missing")
    assert (finding.tier, finding.overridden) == ("hard", False)


def test_empty_run_and_only_cache_dir_are_blocked(source: Path) -> None:
    run = source / RUN
    for path in [run / "raw" / "image_0001.tif", run / "notes.txt"]:
        path.unlink()
    (run / CACHE).mkdir()
    (run / CACHE / "creation.json").write_text("{}")
    (run / "link").symlink_to("raw")  # not a regular file either
    outcome = check(source, overrides=[{"rule": "run_empty", "reason": "please"}])
    assert outcome.blocked
    assert not only(outcome, "run_empty").overridden


def test_run_symlinked_out_of_source_is_blocked(source: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f").write_bytes(b"x")
    (source / "PROJ-0001" / "Runs" / "evil").symlink_to(elsewhere)
    outcome = run_gate(params(source, runPath="PROJ-0001/Runs/evil"), now=NOW)
    assert outcome.blocked
    assert rules(outcome) == {"run_outside_source"}


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("bell\x07.tif", "illegal_filesystem_character"),
        ("bell\x07.tif", "control_character"),
        ("tab\there", "illegal_filesystem_character"),
        ("tab\there", "control_character"),
        ("del\x7f", "control_character"),
        ("c1\x85", "control_character"),
        ("zero\u200bwidth", "control_character"),
        ("rtl\u202eoverride", "control_character"),
        ("line\u2028separator", "control_character"),
        ("new\nline", "illegal_filesystem_character"),
        ("a<b", "illegal_filesystem_character"),
        ("a>b", "illegal_filesystem_character"),
        ("time 10:15", "illegal_filesystem_character"),
        ('say "hi"', "illegal_filesystem_character"),
        ("a|b", "illegal_filesystem_character"),
        ("what?", "illegal_filesystem_character"),
        ("star*", "illegal_filesystem_character"),
        ("back\\slash", "illegal_filesystem_character"),
        ("CON", "reserved_filesystem_name"),
        ("con.txt", "reserved_filesystem_name"),
        ("Aux.tar.gz", "reserved_filesystem_name"),
        ("NUL", "reserved_filesystem_name"),
        ("prn", "reserved_filesystem_name"),
        ("COM1", "reserved_filesystem_name"),
        ("lpt9.log", "reserved_filesystem_name"),
        ("trailing.", "illegal_filesystem_character"),
        ("trailing ", "illegal_filesystem_character"),
        ("Run_{{run_date}}", "leftover_jinja_marker"),
        ("{{}}", "leftover_jinja_marker"),
        ("{% if %}", "leftover_jinja_marker"),
        ("<RUN_ID>.txt", "unresolved_placeholder_token"),
        ("<RUN_ID>.txt", "illegal_filesystem_character"),
        ("Run_<sample_1>", "unresolved_placeholder_token"),
        (os.fsdecode(b"latin1-\xe9"), "non_utf8_name"),
    ],
)
@pytest.mark.parametrize("where", ["file", "dir", "nested"])
def test_hard_name_rules_fire_on_every_component(
    source: Path, name: str, rule: str, where: str
) -> None:
    run = source / RUN
    if where == "file":
        (run / "raw" / name).write_bytes(b"x")
        expected_path = f"raw/{name}"
    elif where == "dir":
        (run / name).mkdir()
        (run / name / "inner.dat").write_bytes(b"x")
        expected_path = name
    else:
        (run / "raw" / name / "deeper").mkdir(parents=True)
        (run / "raw" / name / "deeper" / "inner.dat").write_bytes(b"x")
        expected_path = f"raw/{name}"
    outcome = check(source)
    finding = only(outcome, rule)
    assert finding.tier == "hard"
    assert finding.path == gate_rules.display_path(expected_path)
    assert outcome.blocked
    json.loads(outcome.model_dump_json(by_alias=True))  # JSON-safe even for odd bytes


@pytest.mark.parametrize(
    "name",
    [
        "CONSOLE.txt",
        "COM10",
        "COM0",
        "LPT",
        "icon.png",
        "nul-result.csv",
        "a.b.c",
        "{single}",
        "x}}",
        "{{ unclosed",
        "%}",
        "50% done",
        "a" * 255,
        "ü" * 127,
        "日本語.tif",
        "with space.dat",
        "-dash",
    ],
)
def test_legal_names_do_not_fire(source: Path, name: str) -> None:
    (source / RUN / "raw" / name).write_bytes(b"x")
    outcome = check(source)
    assert not outcome.blocked, outcome.findings
    assert outcome.findings == []


@pytest.mark.parametrize("name", ["a" * 256, "ü" * 128])  # 256 bytes; 128 characters
def test_component_over_255_bytes(name: str) -> None:
    # ext4/tmpfs cannot even create such a name, so the rule is checked on the name
    # itself; it matters for sources on filesystems with longer limits.
    hits = gate_rules.name_hits(name, f"raw/{name}")
    assert [(h.rule, h.tier) for h in hits] == [("path_too_long", "hard")]
    assert gate_rules.name_hits(name[:-1], "x") == []


def _deep_tree(run: Path, *, depth: int, component: str) -> None:
    """Build a tree deeper than PATH_MAX, which only *at-style calls can create."""
    fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(component, dir_fd=fd)
            child = os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)


def test_path_over_4096_bytes_is_reported_not_a_crash(source: Path) -> None:
    run = source / RUN
    _deep_tree(run, depth=21, component="d" * 200)  # 21 * 201 bytes > 4096
    outcome = check_untouched(source)
    too_long = [f for f in outcome.findings if f.rule == "path_too_long"]
    assert too_long and all(f.tier == "hard" for f in too_long)  # the deepest directory and the file in it
    assert outcome.blocked
    json.loads(outcome.model_dump_json(by_alias=True))


def test_long_but_legal_path_passes(source: Path) -> None:
    _deep_tree(source / RUN, depth=15, component="d" * 200)  # ~3000 bytes
    assert not check(source).blocked


def test_symlink_escaping_run_is_hard(source: Path, tmp_path: Path) -> None:
    (source / RUN / "to-etc").symlink_to("/etc")
    (source / RUN / "up").symlink_to("../../other-run/file")
    outcome = check(source)
    escapes = [f for f in outcome.findings if f.rule == "symlink_escapes_run"]
    assert {f.path for f in escapes} == {"to-etc", "up"}
    assert outcome.blocked


def test_symlink_inside_run_is_soft(source: Path) -> None:
    (source / RUN / "latest").symlink_to("raw/image_0001.tif")
    (source / RUN / "abs").symlink_to(source / RUN / "notes.txt")
    (source / RUN / "dangling").symlink_to("raw/not-yet")
    outcome = check(source)
    assert not outcome.blocked
    assert {f.rule for f in outcome.findings} == {"symlink_not_copied"}
    assert all(f.tier == "soft" for f in outcome.findings)


def test_symlink_loop_does_not_hang(source: Path) -> None:
    (source / RUN / "loop").symlink_to("loop")
    assert not check(source).blocked


def test_hidden_file_is_soft_and_cache_dir_is_not_reported(source: Path) -> None:
    run = source / RUN
    (run / ".DS_Store").write_bytes(b"x")
    (run / CACHE).mkdir()
    (run / CACHE / "Bad<Name>").write_bytes(b"ours")  # the cache dir is never judged
    outcome = check(source)
    assert not outcome.blocked
    finding = only(outcome, "hidden_file")
    assert (finding.tier, finding.path) == ("soft", ".DS_Store")


def test_fifo_is_soft(source: Path) -> None:
    os.mkfifo(source / RUN / "pipe")
    outcome = check(source)
    assert only(outcome, "special_file").tier == "soft"
    assert not outcome.blocked


# --- quiet period ----------------------------------------------------------------------


def test_recent_file_means_wait_not_block(source: Path) -> None:
    run = source / RUN
    age_tree(run)
    recent = (NOW - timedelta(seconds=100)).timestamp()
    os.utime(run / "raw" / "image_0001.tif", (recent, recent))
    outcome = run_gate(params(source, quietPeriodSeconds=600), now=NOW)
    assert (outcome.quiet, outcome.quiet_remaining_seconds, outcome.blocked) == (False, 500, False)


def test_recent_directory_counts_too(source: Path) -> None:
    run = source / RUN
    age_tree(run)
    recent = (NOW - timedelta(seconds=30)).timestamp()
    os.utime(run / "raw", (recent, recent))
    outcome = run_gate(params(source, quietPeriodSeconds=60), now=NOW)
    assert (outcome.quiet, outcome.quiet_remaining_seconds) == (False, 30)


def test_old_tree_is_quiet(source: Path) -> None:
    outcome = check(source, quietPeriodSeconds=7199)
    assert (outcome.quiet, outcome.quiet_remaining_seconds) == (True, 0)


def test_quiet_boundary(source: Path) -> None:
    assert not check(source, quietPeriodSeconds=7201).quiet
    assert check(source, quietPeriodSeconds=7200).quiet


def test_cache_dir_activity_does_not_reset_quiet(source: Path) -> None:
    run = source / RUN
    (run / CACHE).mkdir()
    (run / CACHE / "creation.json").write_text("{}")
    age_tree(run)
    now_ts = NOW.timestamp()
    os.utime(run / CACHE, (now_ts, now_ts))
    os.utime(run / CACHE / "creation.json", (now_ts, now_ts))
    assert run_gate(params(source, quietPeriodSeconds=600), now=NOW).quiet


def test_far_future_mtime_is_reported_not_waited_on(source: Path) -> None:
    run = source / RUN
    age_tree(run)
    future = (NOW + timedelta(days=365)).timestamp()
    os.utime(run / "notes.txt", (future, future))
    outcome = run_gate(params(source, quietPeriodSeconds=600), now=NOW)
    assert outcome.quiet
    assert only(outcome, "future_modification_time").tier == "soft"


def test_naive_now_rejected(source: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        run_gate(params(source), now=datetime(2026, 1, 1))


# --- overrides -------------------------------------------------------------------------


@pytest.fixture
def bad_source(source: Path) -> Path:
    (source / RUN / "Run_{{date}}.tif").write_bytes(b"x")
    return source


JINJA = "leftover_jinja_marker"


def write_creation(source: Path, overrides: list[dict[str, Any]]) -> None:
    cache = source / RUN / CACHE
    cache.mkdir(exist_ok=True)
    document = {"sync_status": "pending", "validation_overrides": overrides}
    (cache / "creation.json").write_text(json.dumps(document))


def override(ident: str = "o1", problem: str = JINJA, **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "problem_class": problem,
        "operator": "pi",
        "recorded_at": "2026-11-29T10:00:00Z",
        "reason": "approved by the PI",
        "revoked": False,
        **extra,
    }


def tombstone(revokes: str, recorded_at: str = "2026-11-29T11:00:00Z") -> dict[str, Any]:
    return {
        "id": f"t-{revokes}",
        "revokes": revokes,
        "operator": "pi",
        "recorded_at": recorded_at,
        "reason": "changed my mind",
        "revoked": True,
    }


def test_unoverridden_hard_finding_blocks(bad_source: Path) -> None:
    outcome = check(bad_source)
    assert outcome.blocked
    assert not only(outcome, JINJA).overridden


@pytest.mark.parametrize(
    ("expires_at", "active"),
    [
        (None, True),
        ("2026-12-31T00:00:00Z", True),
        ("2026-12-31T00:00:00+01:00", True),
        ("2026-11-30T11:59:59Z", False),
        ("2026-11-30T12:00:00Z", False),  # expiry is exclusive
        ("not a date", False),
        ("2026-12-31T00:00:00", True),  # no offset: UTC, as in the lab app
        ("2026-11-30T11:59:59", False),
        ("2026-12-31", True),  # a date alone: midnight UTC
        ("2026-11-30", False),
    ],
)
def test_spec_override(bad_source: Path, expires_at: str | None, active: bool) -> None:
    spec = [{"rule": JINJA, "reason": "PI", "expiresAt": expires_at}]
    outcome = check(bad_source, overrides=spec)
    assert only(outcome, JINJA).overridden is active
    assert outcome.blocked is not active


def test_spec_override_for_another_rule_does_not_apply(bad_source: Path) -> None:
    outcome = check(bad_source, overrides=[{"rule": "hidden_file", "reason": "x"}])
    assert outcome.blocked


def test_override_covers_only_its_rule(bad_source: Path) -> None:
    (bad_source / RUN / "a|b").write_bytes(b"x")
    outcome = check(bad_source, overrides=[{"rule": JINJA, "reason": "x"}])
    assert outcome.blocked
    assert only(outcome, JINJA).overridden
    assert not only(outcome, "illegal_filesystem_character").overridden


@pytest.mark.parametrize(
    ("entries", "active"),
    [
        ([override()], True),
        ([override(expires_at="2027-01-01T00:00:00Z")], True),
        ([override(expires_at="2026-01-01T00:00:00Z")], False),
        ([override(expires_at="garbage")], False),
        ([override(expires_at="")], False),
        ([override(expires_at=12345)], False),
        ([override(expires_at="2027-01-01")], True),  # a date alone is accepted
        ([override(expires_at="2027-01-01T00:00:00")], True),  # no offset: UTC
        ([override(expires_at="2026-11-30T11:00:00")], False),
        ([override(revoked=True)], False),
        ([override(revoked=None)], True),  # null counts as not revoked
        ([{k: v for k, v in override().items() if k != "revoked"}], True),
        ([override(), tombstone("o1")], False),
        ([override("o1"), override("o2"), tombstone("o1")], True),
        ([override(), tombstone("unknown-id")], True),  # an orphan tombstone revokes nothing
        ([override(problem="illegal_filesystem_character")], False),
        ([{k: v for k, v in override().items() if k != "id"}], True),  # written before the lab app's schema 1.6
        (["not an object", 42], False),
    ],
)
def test_creation_json_overrides(
    bad_source: Path, entries: list[dict[str, Any]], active: bool
) -> None:
    write_creation(bad_source, entries)
    outcome = check(bad_source)
    assert only(outcome, JINJA).overridden is active
    assert outcome.blocked is not active


def test_unreadable_creation_json_is_reported_and_gives_no_overrides(bad_source: Path) -> None:
    (bad_source / RUN / CACHE).mkdir()
    (bad_source / RUN / CACHE / "creation.json").write_text("{broken")
    outcome = check(bad_source)
    assert outcome.blocked
    assert only(outcome, "creation_json_unreadable").tier == "soft"


def test_soft_findings_never_block_and_are_never_marked_overridden(source: Path) -> None:
    (source / RUN / ".hidden").write_bytes(b"x")
    outcome = check(source, overrides=[{"rule": "hidden_file", "reason": "fine"}])
    assert not outcome.blocked
    assert not only(outcome, "hidden_file").overridden


def test_findings_are_capped_with_blocking_ones_first(source: Path) -> None:
    run = source / RUN
    for i in range(gate_rules.MAX_FINDINGS + 50):
        (run / f".hidden{i}").write_bytes(b"x")
    (run / "zz|bad").write_bytes(b"x")
    outcome = check(source)
    assert len(outcome.findings) == gate_rules.MAX_FINDINGS
    assert outcome.findings_truncated == 51
    assert outcome.findings[0].rule == "illegal_filesystem_character"
    assert outcome.blocked


# --- latest_revocation -----------------------------------------------------------------


def test_latest_revocation(source: Path) -> None:
    run = source / RUN
    assert latest_revocation(run, CACHE) is None
    write_creation(source, [override()])
    assert latest_revocation(run, CACHE) is None
    write_creation(
        source,
        [
            override(),
            tombstone("o1", "2026-11-29T11:00:00Z"),
            tombstone("o2", "2026-11-30T09:30:00+01:00"),
        ],
    )
    assert latest_revocation(run, CACHE) == datetime(2026, 11, 30, 8, 30, tzinfo=UTC)


def test_latest_revocation_with_bad_time_counts_as_recent(source: Path) -> None:
    write_creation(source, [override(), tombstone("o1", "yesterday-ish")])
    result = latest_revocation(source / RUN, CACHE)
    assert result is not None and result > NOW + timedelta(days=365 * 1000)


def test_latest_revocation_unreadable_creation_raises(source: Path) -> None:
    (source / RUN / CACHE).mkdir()
    (source / RUN / CACHE / "creation.json").write_text("[")
    with pytest.raises(ValueError):
        latest_revocation(source / RUN, CACHE)


def test_unreadable_directory_is_hard_even_for_root(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = source / RUN / "locked"
    locked.mkdir()
    age_tree(source / RUN)
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        # The gate walks through descriptors: recognise the locked one by what it names.
        named = os.path.realpath(f"/proc/self/fd/{path}") if isinstance(path, int) else os.fspath(path)
        if named == os.fspath(locked):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    overrides = [{"rule": "unreadable_path", "reason": "ignore it"}]
    outcome = run_gate(params(source, overrides=overrides), now=NOW)
    finding = only(outcome, "unreadable_path")
    assert (finding.path, finding.tier, finding.overridden) == ("locked", "hard", False)
    assert outcome.blocked


def test_run_path_components_are_judged_too(tmp_path: Path) -> None:
    run_path = "PROJ-0001/Runs/Run_2026-11-28T10:15"
    run = tmp_path / "source" / run_path
    run.mkdir(parents=True)
    (run / "f.raw").write_bytes(b"x")
    age_tree(run)
    outcome = run_gate(params(tmp_path / "source", runPath=run_path), now=NOW)
    finding = only(outcome, "illegal_filesystem_character")
    assert finding.path == run_path
    assert finding.message.startswith("in runPath:")
    assert outcome.blocked


def test_run_path_equal_to_source_root_is_refused(source: Path) -> None:
    outcome = run_gate(params(source, runPath="."), now=NOW)
    assert rules(outcome) == {"run_outside_source"}
    assert outcome.blocked
