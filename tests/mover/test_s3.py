"""An S3 replica (a real S3 protocol server on loopback: `rclone serve s3`).

S3 keeps MD5 ETags, never SHA-256: `verify.method: Auto` must read every
byte back and hash it (Download), never settle for sizes or MD5.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moverlib import MoverRun, RunFactory, params_for, sha256_tree

from nassync.api.mover_io import MoverParams
from nassync_dev.nas import RcloneS3Nas

pytestmark = pytest.mark.nas
Runner = Callable[[MoverParams], MoverRun]
FILES = {"raw/a.tif": os.urandom(40_000), "raw/b.tif": os.urandom(7_000), "notes.txt": b"n\n"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3Nas]:
    with RcloneS3Nas(workdir=tmp_path_factory.mktemp("s3")) as server:
        yield server


def test_push_and_verify_to_s3_read_the_bytes_back(s3: RcloneS3Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    destination = s3.destination()
    pushed = run_mover(params_for(s3, run, "push", destination=destination))
    assert pushed.returncode == 0, pushed.result_text + pushed.stderr
    assert sha256_tree(s3.object_path() / run.run_path) == sha256_tree(run.dir)
    digest = pushed.result["manifest"]["sha256"]
    verified = run_mover(params_for(s3, run, "verify", destination=destination,
                                    expectedManifestSha256=digest))
    assert verified.returncode == 0, verified.result_text
    assert verified.result["verify"]["method"] == "Download", "S3 has no SHA-256 of its own"


def test_same_size_corruption_on_s3_is_caught(s3: RcloneS3Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    destination = s3.destination()
    digest = run_mover(params_for(s3, run, "push", destination=destination)
                       ).result["manifest"]["sha256"]
    victim: Path = s3.object_path() / run.run_path / "raw/b.tif"
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    victim.write_bytes(bytes(data))
    mismatch = run_mover(params_for(s3, run, "verify", destination=destination,
                                    expectedManifestSha256=digest))
    assert mismatch.kind == "HashMismatch" and "raw/b.tif" in mismatch.message, mismatch.result_text
