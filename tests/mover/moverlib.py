"""Helpers for mover tests: run dirs, MoverParams, running the real CLI, tree hashes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nassync.api.mover_io import PARAMS_ENV, RESULT_PATH_ENV, MoverParams
from nassync_dev.nas import RcloneSftpNas, SshNas
from nassync_dev.scenario import LAB_CACHE_DIR, Run
from nassync_dev.scenario import params_for as params_for  # re-exported for the mover tests

MOVER = str(Path(sys.executable).parent / "nassync-mover")
CACHE = LAB_CACHE_DIR
Nas = SshNas | RcloneSftpNas


RunFactory = Callable[..., Run]


@dataclass(frozen=True)
class MoverRun:
    returncode: int
    result: dict[str, Any]
    result_text: str
    stdout: str
    stderr: str

    @property
    def progress(self) -> list[dict[str, Any]]:
        return [r for r in _json_lines(self.stdout) if r.get("event") == "progress"]

    @property
    def kind(self) -> str | None:
        error = self.result.get("error")
        return error["kind"] if error else None

    @property
    def message(self) -> str:
        error = self.result.get("error")
        return str(error["message"]) if error else ""


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def start_mover(params: MoverParams, result_path: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env[PARAMS_ENV] = params.model_dump_json(by_alias=True)
    env[RESULT_PATH_ENV] = str(result_path)
    return subprocess.Popen(
        [MOVER, params.step],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_mover(proc: subprocess.Popen[str], result_path: Path, *, stdout: str = "") -> MoverRun:
    out, err = proc.communicate(timeout=300)
    text = result_path.read_text()
    return MoverRun(
        returncode=proc.returncode,
        result=json.loads(text),
        result_text=text,
        stdout=stdout + out,
        stderr=err,
    )


def sha256_tree(root: Path, *, skip: str = CACHE) -> dict[str, str]:
    """relpath -> SHA-256 of every regular file under root (cache dir skipped)."""
    out: dict[str, str] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if rel == skip or rel.startswith(skip + "/") or not path.is_file() or path.is_symlink():
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def remote_run_dir(nas: SshNas | RcloneSftpNas, run: Run) -> Path:
    return nas.root / "nas" / run.run_path
