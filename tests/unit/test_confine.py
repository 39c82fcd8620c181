"""mover/confine.py: a copy tool in the prepared ruleset reads the run and what it needs, nothing else.

Run for real (the ruleset entered between fork and exec of `cat`, as the push
does for rclone and rsync), so what is asserted is what the kernel enforces.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nassync.mover import confine


def _cat(path: Path, ruleset: confine.Ruleset, *fds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cat", str(path)], capture_output=True, text=True, timeout=30, check=False,
                          pass_fds=(*fds, ruleset.fd), preexec_fn=ruleset.enter)


def test_this_machine_offers_landlock() -> None:
    # The guarantee in docs/concepts.md rests on it; a CI machine without it must say so loudly.
    assert confine.landlock_abi() >= 1


@pytest.fixture
def run_fd(tmp_path: Path) -> Iterator[int]:
    run = tmp_path / "source" / "run"
    run.mkdir(parents=True)
    (run / "data.bin").write_text("run bytes")
    other = tmp_path / "source" / "other-run"
    other.mkdir()
    (other / "data.bin").write_text("another run's bytes")
    (run / "swapped").symlink_to(other)
    fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_only_the_run_and_the_allowed_places_can_be_read(tmp_path: Path, run_fd: int) -> None:
    secrets = tmp_path / "secret"
    secrets.mkdir()
    (secrets / "rclone.conf").write_text("[nas]\n")
    ruleset = confine.prepare((run_fd,), [str(secrets)])
    assert ruleset is not None
    try:
        run = Path(f"/proc/self/fd/{run_fd}")
        inside = _cat(run / "data.bin", ruleset, run_fd)
        assert (inside.returncode, inside.stdout) == (0, "run bytes"), inside.stderr
        assert _cat(secrets / "rclone.conf", ruleset, run_fd).returncode == 0
        escaped = _cat(run / "swapped" / "data.bin", ruleset, run_fd)
        assert escaped.returncode != 0 and "Permission denied" in escaped.stderr and escaped.stdout == ""
        assert _cat(tmp_path / "source" / "other-run" / "data.bin", ruleset, run_fd).returncode != 0
        assert _cat(Path("/etc/passwd"), ruleset, run_fd).returncode == 0, "system files stay readable"
    finally:
        ruleset.close()


def test_the_mover_itself_stays_unconfined(tmp_path: Path, run_fd: int) -> None:
    ruleset = confine.prepare((run_fd,), [])
    assert ruleset is not None
    ruleset.close()
    (tmp_path / "elsewhere.txt").write_text("x")
    assert (tmp_path / "elsewhere.txt").read_text() == "x", "only the tool's process enters the ruleset"
