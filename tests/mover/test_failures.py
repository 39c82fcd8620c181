"""Failure classification end to end: real tools, real servers, real errors."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from moverlib import (
    CACHE,
    MoverRun,
    Nas,
    RunFactory,
    finish_mover,
    params_for,
    remote_run_dir,
    sha256_tree,
    start_mover,
)

from nassync.api.mover_io import MoverParams, RcloneDestination, RsyncDestination
from nassync.transports.rclone import find_rclone
from nassync_dev.labapp import creation_document, write_creation
from nassync_dev.nas import RcloneSftpNas, SshNas, make_keypair

pytestmark = pytest.mark.nas

Runner = Callable[[MoverParams], MoverRun]
DECOY_PASSWORD = "decoy-Password-Never-Accepted-7f3a"


def _obscure(secret: str) -> str:
    done = subprocess.run([find_rclone(), "obscure", "-"], input=secret, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _rclone_config(nas: RcloneSftpNas, path: Path, *, key: Path, known_hosts: Path) -> Path:
    # The decoy password is in the secret file like a real one; the server does not
    # accept passwords, so it can only show up in output if we leak the config.
    path.write_text(
        "[nas]\ntype = sftp\nhost = 127.0.0.1\n"
        f"port = {nas.port}\nuser = {os.environ.get('USER', 'root')}\n"
        f"key_file = {key}\nknown_hosts_file = {known_hosts}\n"
        f"pass = {_obscure(DECOY_PASSWORD)}\n"
    )
    path.chmod(0o600)
    return path


def _destination(
    nas: Nas, tmp_path: Path, *, key: Path | None = None, known_hosts: Path | None = None
) -> RcloneDestination | RsyncDestination:
    key = key or nas.client_key.private_path
    known_hosts = known_hosts or nas.known_hosts
    if isinstance(nas, RcloneSftpNas):
        config = _rclone_config(nas, tmp_path / "rclone.conf", key=key, known_hosts=known_hosts)
        return nas.destination(path="/nas", config_file=config)
    destination = nas.destination(path="/nas", key_file=key)
    return destination.model_copy(update={"known_hosts_file": str(known_hosts)})


def _secret_texts(destination: RcloneDestination | RsyncDestination) -> list[str]:
    """Strings that must never appear in results or logs."""
    texts = [_obscure(DECOY_PASSWORD), DECOY_PASSWORD]
    key_file = getattr(destination, "key_file", None)
    if isinstance(destination, RcloneDestination):
        config = Path(destination.config_file).read_text()
        key_file = next(line.split("=", 1)[1].strip() for line in config.splitlines() if "key_file" in line)
    key_lines = Path(str(key_file)).read_text().splitlines()
    texts += [line for line in key_lines if line and "-----" not in line]
    return texts


def _assert_no_secret(run: MoverRun, destination: RcloneDestination | RsyncDestination) -> None:
    everything = run.result_text + run.stdout + run.stderr
    for secret in _secret_texts(destination):
        assert secret not in everything


def test_wrong_key_is_auth(nas: Nas, make_run: RunFactory, run_mover: Runner, tmp_path: Path) -> None:
    wrong = make_keypair(tmp_path / "wrong_key")
    destination = _destination(nas, tmp_path, key=wrong.private_path)
    run = make_run({"a": b"a"})
    result = run_mover(params_for(nas, run, "push", destination=destination))
    assert result.returncode == 1
    assert result.kind == "Auth", result.result_text
    assert "refused the credentials" in result.message
    _assert_no_secret(result, destination)
    assert not remote_run_dir(nas, run).exists()


def test_changed_host_key_is_auth(nas: Nas, make_run: RunFactory, run_mover: Runner, tmp_path: Path) -> None:
    impostor = make_keypair(tmp_path / "impostor")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{nas.port} {impostor.public_line}\n")
    destination = _destination(nas, tmp_path, known_hosts=known_hosts)
    run = make_run({"a": b"a"})
    result = run_mover(params_for(nas, run, "push", destination=destination))
    assert result.kind == "Auth", result.result_text
    assert "host key" in result.message
    assert not remote_run_dir(nas, run).exists()


def test_secrets_never_in_output_of_a_successful_push(
    rclone_nas: RcloneSftpNas, make_run: RunFactory, run_mover: Runner, tmp_path: Path
) -> None:
    destination = _destination(rclone_nas, tmp_path)
    run = make_run({"a": b"a"})
    pushed = run_mover(params_for(rclone_nas, run, "push", destination=destination))
    assert pushed.returncode == 0, pushed.result_text
    verified = run_mover(params_for(rclone_nas, run, "verify", destination=destination))
    assert verified.returncode == 0, verified.result_text
    for result in (pushed, verified):
        _assert_no_secret(result, destination)
        # Every log line is JSON naming the SyncJob.
        import json

        for line in result.stderr.splitlines():
            assert json.loads(line)["owner"] == "lab/job-a/uid-a"


@pytest.mark.parametrize("kind", ["rclone", "rsync"])
def test_nas_down_is_network(kind: str, make_run: RunFactory, run_mover: Runner, tmp_path: Path) -> None:
    server: Nas = RcloneSftpNas(workdir=tmp_path / "down") if kind == "rclone" else SshNas(workdir=tmp_path / "down")
    with server:
        destination = server.destination(path="/nas")
    assert not server.running
    run = make_run({"a": b"a"})
    for step in ("push", "verify"):
        if step == "verify":
            from nassync.mover.manifest import build_manifest, write_manifest

            manifest = build_manifest(run.dir, cache_dir_name=CACHE)
            write_manifest(run.dir, cache_dir_name=CACHE, manifest=manifest)
        result = run_mover(params_for(server, run, step, destination=destination))
        assert result.returncode == 1
        assert result.kind == "Network", result.result_text
        assert "could not be reached" in result.message


def _wait_for_progress(proc: subprocess.Popen[str], *, timeout: float = 60) -> str:
    """Read stdout until the first progress line with bytes > 0; return what was read."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if '"event":"progress"' in line and '"bytes":0,' not in line:
            return seen
    raise AssertionError(f"no progress line before the push ended: {seen}")


def test_files_deleted_before_their_turn_are_local_vanished(nas: Nas, make_run: RunFactory, tmp_path: Path) -> None:
    run = make_run({f"f{i:02d}.bin": os.urandom(512 * 1024) for i in range(12)})
    params = params_for(nas, run, "push", bandwidth={"defaultKiBps": 512})
    result_path = tmp_path / "result.json"
    proc = start_mover(params, result_path)
    seen = _wait_for_progress(proc)
    for i in (9, 10, 11):  # last in order: not opened yet by either tool
        (run.dir / f"f{i:02d}.bin").unlink()
    result = finish_mover(proc, result_path, stdout=seen)
    assert result.returncode == 1
    assert result.kind == "LocalVanished", result.result_text
    assert "disappeared" in result.message or "vanished" in result.message


def test_file_deleted_while_being_copied_is_local_vanished(nas: Nas, make_run: RunFactory, tmp_path: Path) -> None:
    run = make_run({"only.bin": os.urandom(3 << 20)})
    params = params_for(nas, run, "push", bandwidth={"defaultKiBps": 1024})
    result_path = tmp_path / "result.json"
    proc = start_mover(params, result_path)
    seen = _wait_for_progress(proc)
    # The tool holds the file open and may well finish copying it: only the
    # post-copy check can notice that the run no longer has it.
    (run.dir / "only.bin").unlink()
    result = finish_mover(proc, result_path, stdout=seen)
    assert result.returncode == 1
    assert result.kind == "LocalVanished", result.result_text
    assert "only.bin" in result.message


def test_control_characters_are_blocked_by_the_gate(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"new\nline.txt": b"n", "ok.txt": b"o"})
    gated = run_mover(params_for(nas, run, "gate"))
    assert gated.returncode == 0, gated.result_text
    assert gated.result["gate"]["blocked"] is True
    rules = {f["rule"] for f in gated.result["gate"]["findings"]}
    assert "illegal_filesystem_character" in rules


def test_control_characters_never_reach_the_nas_with_rclone(
    rclone_nas: RcloneSftpNas, make_run: RunFactory, run_mover: Runner
) -> None:
    # Even if the gate finding were overridden: rclone stores "\n" as "␊" on sftp,
    # so the NAS copy could not be checked against the manifest by anyone else.
    run = make_run({"new\nline.txt": b"n", "ok.txt": b"o"})
    pushed = run_mover(params_for(rclone_nas, run, "push"))
    assert pushed.returncode == 1
    assert pushed.kind == "Config", pushed.result_text
    assert "control character" in pushed.message
    assert not remote_run_dir(rclone_nas, run).exists()


def test_control_characters_travel_exactly_with_rsync(ssh_nas: SshNas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"new\nline.txt": b"n", "back\\slash\rcr.txt": b"b", "ok.txt": b"o"})
    pushed = run_mover(params_for(ssh_nas, run, "push"))
    assert pushed.returncode == 0, pushed.result_text
    assert sha256_tree(remote_run_dir(ssh_nas, run)) == sha256_tree(run.dir)
    for method in ("RemoteHash", "Download"):
        verified = run_mover(params_for(ssh_nas, run, "verify", verifyMethod=method))
        assert verified.returncode == 0, verified.result_text


def test_empty_run_is_blocked_by_the_gate(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({})
    write_creation(run.dir, creation_document(run.run_path))
    gated = run_mover(params_for(nas, run, "gate"))
    assert gated.returncode == 0, gated.result_text
    assert gated.result["gate"]["blocked"] is True
    assert "run_empty" in {f["rule"] for f in gated.result["gate"]["findings"]}
    import json

    creation = json.loads((run.dir / CACHE / "creation.json").read_text())
    assert creation["sync_status"] == "blocked_by_validation"


def test_clean_run_passes_the_gate(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"a.txt": b"a", "empty": b""})
    gated = run_mover(params_for(nas, run, "gate"))
    assert gated.returncode == 0
    assert gated.result["gate"]["blocked"] is False
    assert gated.result["ok"] is True


def test_bad_params_exit_2_with_a_config_result(tmp_path: Path) -> None:
    from moverlib import MOVER

    result_path = tmp_path / "r.json"
    env = {**os.environ, "NASSYNC_PARAMS": '{"step": "push"}', "NASSYNC_RESULT_PATH": str(result_path)}
    done = subprocess.run([MOVER, "push"], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert '"kind":"Config"' in result_path.read_text()
