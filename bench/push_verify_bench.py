"""Benchmark: `nassync-mover push` + `verify` against the bare rclone commands.

The mover adds work around the copy (a SHA-256 manifest before it, a local
re-hash and a remote SHA-256 listing after it, JSON progress, owner checks).
This measures what that costs on one machine, in one invocation: the same run
(mixed large/medium/small files) is copied to a loopback `rclone serve sftp`
twice, into fresh remote directories:

  bare:  rclone copy RUN nas:/bench/bare-... ; rclone check --download RUN nas:/bench/bare-...
  ours:  nassync-mover push ; nassync-mover verify   (verifyMethod as given, default Auto)

and prints a table and the ratio ours/bare (target: within 15%).

    .venv/bin/python bench/push_verify_bench.py [--size-mib 512] [--verify-method Auto]

A script, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from nassync.api.mover_io import PARAMS_ENV, RESULT_PATH_ENV, MoverParams
from nassync_dev.nas import RcloneSftpNas

MOVER = str(Path(sys.executable).parent / "nassync-mover")
CACHE = ".exlab-wizard"


@dataclass(frozen=True)
class Timing:
    label: str
    seconds: float


def make_run(root: Path, *, size_mib: int) -> Path:
    """~size_mib of data: 60% in a few large files, 30% medium, 10% in many small ones."""
    run = root / "PROJ-BENCH" / "Runs" / "Run_bench"
    run.mkdir(parents=True)
    total = size_mib << 20
    plan = [(0.6, 64 << 20, "raw"), (0.3, 1 << 20, "tiles"), (0.1, 16 << 10, "meta")]
    for share, size, folder in plan:
        count = max(1, round(total * share / size))
        (run / folder).mkdir()
        block = os.urandom(size)
        for i in range(count):
            # Distinct content per file (a shared prefix would not matter to SHA-256 or sftp).
            (run / folder / f"{folder}_{i:05d}.bin").write_bytes(i.to_bytes(8, "big") + block[8:])
    return run


def timed(label: str, argv: list[str], *, env: dict[str, str]) -> Timing:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return Timing(label, seconds)


def bare(nas: RcloneSftpNas, run: Path) -> list[Timing]:
    env = {**os.environ, "RCLONE_CONFIG": str(nas.config_path)}
    remote = f"nas:/bench/bare-{uuid.uuid4().hex[:8]}"
    return [
        timed("rclone copy", [nas.rclone, "copy", f"{run}/", remote], env=env),
        timed("rclone check --download", [nas.rclone, "check", "--download", f"{run}/", remote], env=env),
    ]


def ours(nas: RcloneSftpNas, source_root: Path, run_path: str, method: str, work: Path) -> list[Timing]:
    base = {
        "sourceRoot": str(source_root),
        "runPath": run_path,
        "cacheDirName": CACHE,
        "destination": nas.destination(path=f"/bench/ours-{uuid.uuid4().hex[:8]}").model_dump(by_alias=True),
        "owner": "bench/bench/0",
        "verifyMethod": method,
    }
    timings: list[Timing] = []
    digest = ""
    for step in ("push", "verify"):
        params = MoverParams.model_validate(
            {**base, "step": step, **({"expectedManifestSha256": digest} if digest else {})}
        )
        result_path = work / f"{step}.json"
        env = {
            **os.environ,
            PARAMS_ENV: params.model_dump_json(by_alias=True),
            RESULT_PATH_ENV: str(result_path),
        }
        timings.append(timed(f"nassync-mover {step}", [MOVER, step], env=env))
        result = json.loads(result_path.read_text())
        if step == "push":
            digest = result["manifest"]["sha256"]
        else:
            timings[-1] = Timing(f"nassync-mover verify ({result['verify']['method']})", timings[-1].seconds)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--verify-method", default="Auto", choices=["Auto", "RemoteHash", "Download"])
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nassync-bench-"))
    try:
        source_root = work / "source"
        run = make_run(source_root, size_mib=args.size_mib)
        files = sum(1 for p in run.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
        with RcloneSftpNas(workdir=work / "nas") as nas:
            bare_t = bare(nas, run)
            shutil.rmtree(run / CACHE, ignore_errors=True)
            ours_t = ours(nas, source_root, str(run.relative_to(source_root)), args.verify_method, work)
        bare_total = sum(t.seconds for t in bare_t)
        ours_total = sum(t.seconds for t in ours_t)
        print(f"run: {files} files, {size / (1 << 20):.0f} MiB; loopback rclone serve sftp; {os.cpu_count()} CPUs")
        print(f"{'command':<40}{'seconds':>10}{'MiB/s':>10}")
        for t in [*bare_t, Timing("bare total", bare_total), *ours_t, Timing("nassync total", ours_total)]:
            print(f"{t.label:<40}{t.seconds:>10.2f}{size / (1 << 20) / t.seconds:>10.1f}")
        ratio = ours_total / bare_total
        verdict = "within" if ratio <= 1.15 else "NOT within"
        print(f"ratio nassync/bare: {ratio:.3f} ({verdict} the 15% target)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
