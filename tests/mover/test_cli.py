"""The CLI contract itself: parameter sources, step mismatch, result file and stdout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from moverlib import MOVER, RunFactory, params_for

from nassync_dev.nas import SshNas


def _run(argv: list[str], *, env_params: str | None, result: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NASSYNC_PARAMS"}
    if env_params is not None:
        env["NASSYNC_PARAMS"] = env_params
    env["NASSYNC_RESULT_PATH"] = str(result)
    return subprocess.run([MOVER, *argv], env=env, capture_output=True, text=True, check=False)


def test_params_file_runs_the_gate(ssh_nas: SshNas, make_run: RunFactory, tmp_path: Path) -> None:
    run = make_run({"a.txt": b"a"})
    params_file = tmp_path / "params.json"
    params_file.write_text(params_for(ssh_nas, run, "gate").model_dump_json(by_alias=True))
    done = _run(["gate", "--params-file", str(params_file)], env_params=None, result=tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["step"] == "gate" and result["ok"] is True
    # The result is also the last stdout line, for `kubectl logs`.
    last = json.loads(done.stdout.splitlines()[-1])
    assert last == {"event": "result", "result": result}


def test_step_mismatch_is_refused(ssh_nas: SshNas, make_run: RunFactory, tmp_path: Path) -> None:
    run = make_run({"a.txt": b"a"})
    params = params_for(ssh_nas, run, "verify").model_dump_json(by_alias=True)
    done = _run(["cleanup"], env_params=params, result=tmp_path / "r.json")
    assert done.returncode == 2
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["error"]["kind"] == "Config"
    assert run.dir.joinpath("a.txt").exists()


def test_missing_params_is_a_config_error(tmp_path: Path) -> None:
    done = _run(["push"], env_params=None, result=tmp_path / "r.json")
    assert done.returncode == 2
    assert json.loads((tmp_path / "r.json").read_text())["error"]["kind"] == "Config"
