"""Issue #9, items 5, 6, 10 and 12: what the real copy tools do, attacked through the real mover CLI.

5: a corrupted NAS file of the same size and mtime is repaired by the re-push after a mismatch.
6: a run's own `.rsync-partial/` directories reach the NAS; rsync's own partial dir is refused by name.
10: whatever rclone prints, no secret reaches the result, the logs or the progress lines.
12: as root, ssh uses the key from a Secret volume (0444) through a private 0600 copy.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetylib import (
    Mover,
    Nas,
    RunFactory,
    data_files,
    files_under,
    params_for,
    push_and_verify,
    remote_dir,
    sha256,
    write_local_manifest,
)

from nassync.api.mover_io import RcloneDestination
from nassync.transports.rclone import find_rclone
from nassync_dev.nas import RcloneSftpNas, SshNas

pytestmark = pytest.mark.nas


# --- item 5 ---------------------------------------------------------------------------------------------


def _corrupt_keeping_size_and_mtime(path: Path) -> bytes:
    info = path.stat()
    data = path.read_bytes()
    bad = bytes([data[0] ^ 0xFF]) + data[1:]
    path.write_bytes(bad)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert path.stat().st_size == info.st_size and path.stat().st_mtime_ns == info.st_mtime_ns
    return bad


def test_rsync_repairs_a_same_size_same_mtime_corruption_when_comparing_content(
        ssh_nas: SshNas, make_run: RunFactory, mover: Mover) -> None:
    good = os.urandom(200_000)
    run = make_run({"data/x.bin": good, "y.txt": b"y"})
    digest = push_and_verify(mover, ssh_nas, run)
    victim = remote_dir(ssh_nas, run) / "data/x.bin"
    _corrupt_keeping_size_and_mtime(victim)
    verified = mover(params_for(ssh_nas, run, "verify", expectedManifestSha256=digest))
    assert verified.kind == "HashMismatch", verified.explain()
    # rsync's quick check (size, mtime) cannot see it: a plain re-push leaves the corruption.
    plain = mover(params_for(ssh_nas, run, "push", expectedManifestSha256=digest))
    assert plain.returncode == 0, plain.explain()
    assert sha256(victim.read_bytes()) != sha256(good), "the corruption must be invisible to the quick check"
    # The re-push after a mismatch compares content.
    repaired = mover(params_for(ssh_nas, run, "push", expectedManifestSha256=digest, compareContent=True))
    assert repaired.returncode == 0, repaired.explain()
    assert victim.read_bytes() == good
    verified = mover(params_for(ssh_nas, run, "verify", expectedManifestSha256=digest))
    assert verified.returncode == 0 and verified.result["verify"]["differing"] == 0, verified.explain()


def test_rclone_repairs_a_same_size_same_mtime_corruption_on_any_push(
        sftp_nas: RcloneSftpNas, make_run: RunFactory, mover: Mover) -> None:
    good = os.urandom(200_000)
    run = make_run({"data/x.bin": good})
    digest = push_and_verify(mover, sftp_nas, run)
    victim = remote_dir(sftp_nas, run) / "data/x.bin"
    _corrupt_keeping_size_and_mtime(victim)
    for compare in (False, True):
        pushed = mover(params_for(sftp_nas, run, "push", expectedManifestSha256=digest, compareContent=compare))
        assert pushed.returncode == 0, pushed.explain()
        assert victim.read_bytes() == good
        _corrupt_keeping_size_and_mtime(victim)


# --- item 6 ---------------------------------------------------------------------------------------------


def test_a_runs_own_rsync_partial_dirs_reach_the_nas(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    files = {".rsync-partial/a.bin": b"user data in .rsync-partial", "sub/.rsync-partial/b.bin": b"more",
             "c.bin": b"c"}
    run = make_run(files)
    gated = mover(params_for(nas, run, "gate"))
    assert not gated.result["gate"]["blocked"], gated.explain()
    push_and_verify(mover, nas, run)
    assert data_files(remote_dir(nas, run)) == files


def test_rsyncs_own_partial_dir_name_is_refused_before_anything_is_copied(
        ssh_nas: SshNas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({".nassync-rsync-partial/a.bin": b"would be skipped by rsync", "c.bin": b"c"})
    gated = mover(params_for(ssh_nas, run, "gate", overrides=[{"rule": "transport_reserved_name", "reason": "x"}]))
    assert gated.result["gate"]["blocked"], gated.explain()
    hard = [f for f in gated.result["gate"]["findings"] if f["rule"] == "transport_reserved_name"]
    assert hard and hard[0]["tier"] == "hard" and not hard[0]["overridden"]
    pushed = mover(params_for(ssh_nas, run, "push"))
    assert pushed.returncode == 1 and pushed.kind == "Config", pushed.explain()
    assert ".nassync-rsync-partial" in pushed.message
    assert not remote_dir(ssh_nas, run).exists() or not data_files(remote_dir(ssh_nas, run))


# --- item 10 --------------------------------------------------------------------------------------------

SECRET = "S3cretPw-7f3a"
BASIC = "Ym9iOlMzY3JldFB3LTdmM2E="  # base64("bob:S3cretPw-7f3a")


def _rclone_destination(tmp: Path, config: str) -> RcloneDestination:
    path = tmp / "rclone.conf"
    path.write_text(config)
    path.chmod(0o600)
    return RcloneDestination(remote="nas", path="/nas", configFile=str(path))


def _assert_no_secret(text: str) -> None:
    for secret in (SECRET, BASIC, "S3cretPw"):
        assert secret not in text, f"secret {secret!r} leaked:\n{text[-3000:]}"


@pytest.fixture
def answering_server() -> Iterator[tuple[int, list[bytes]]]:
    """An HTTP server that answers every request with 500 and the body at the head of the list."""
    bodies: list[bytes] = [b""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = bodies[0]
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PROPFIND = do_PUT = do_HEAD = do_MKCOL = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # bound (and listening) here
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], bodies
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("step", ["push", "verify"])
def test_a_password_on_a_line_of_its_own_is_never_echoed(
        sftp_nas: RcloneSftpNas, make_run: RunFactory, mover: Mover, tmp_path: Path, step: str) -> None:
    config = sftp_nas.config_path.read_text() + f"{SECRET}\n"
    run = make_run({"a.bin": b"a"})
    digest = write_local_manifest(run)
    result = mover(params_for(sftp_nas, run, step, destination=_rclone_destination(tmp_path, config),
                              expectedManifestSha256=digest))
    assert result.returncode == 1 and result.kind == "Config", result.explain()
    assert "cannot be parsed" in result.message
    _assert_no_secret(result.everything)


def test_user_and_password_before_a_host_are_never_echoed(
        sftp_nas: RcloneSftpNas, make_run: RunFactory, mover: Mover, tmp_path: Path) -> None:
    config = sftp_nas.config_path.read_text().replace("host = 127.0.0.1", f"host = labuser:{SECRET}@127.0.0.1")
    run = make_run({"a.bin": b"a"})
    result = mover(params_for(sftp_nas, run, "push", destination=_rclone_destination(tmp_path, config)))
    assert result.returncode == 1, result.explain()
    assert "labuser:[redacted]@" in result.message, result.explain()
    _assert_no_secret(result.everything)


@pytest.mark.parametrize(("backend", "body"), [
    ("webdav", f'{{"error": "denied", "pass": "{SECRET}"}}'),
    ("webdav", f'{{"error":"denied","password":"{SECRET}","user":"bob"}}'),
    ("webdav", f"gateway refused Authorization: Basic {BASIC} for this share"),
    ("webdav", f"upstream bob:{SECRET}@nas.lab.example refused the login"),
    # rclone's REST client quotes the body with Go's %q: the JSON arrives with escaped quotes.
    ("seafile", f'{{"error":"denied","pass":"{SECRET}"}}'),
], ids=["json-pass", "json-password", "authorization-basic", "userinfo-without-scheme", "json-pass-go-quoted"])
def test_secrets_in_what_the_nas_answers_are_never_echoed(
        make_run: RunFactory, mover: Mover, tmp_path: Path, answering_server: tuple[int, list[bytes]],
        backend: str, body: str) -> None:
    port, bodies = answering_server
    bodies[0] = body.encode()
    if backend == "webdav":
        config = f"[nas]\ntype = webdav\nurl = http://127.0.0.1:{port}/dav\nvendor = other\n"
    else:
        obscured = subprocess.run([find_rclone(), "obscure", "-"], input=b"not-the-secret", capture_output=True,
                                  check=True).stdout.decode().strip()
        config = f"[nas]\ntype = seafile\nurl = http://127.0.0.1:{port}\nuser = bob\npass = {obscured}\n"
    run = make_run({"a.bin": b"a"})
    digest = write_local_manifest(run)
    destination = _rclone_destination(tmp_path, config)
    for step in ("push", "verify"):
        # One try per request: the answer never changes, and rclone's default low-level retries take long.
        result = mover(params_for(None, run, step, destination=destination,  # type: ignore[arg-type]
                                  expectedManifestSha256=digest, verifyMethod="Download"),
                       env={"RCLONE_LOW_LEVEL_RETRIES": "1", "RCLONE_RETRIES": "1"})
        assert result.returncode == 1, result.explain()
        assert "[redacted]" in result.message, result.explain()  # rclone did echo it; we did not
        _assert_no_secret(result.everything)


# --- item 12 --------------------------------------------------------------------------------------------


def test_as_root_ssh_uses_a_0444_secret_key_through_a_private_copy(
        ssh_nas: SshNas, make_run: RunFactory, mover: Mover, tmp_path: Path) -> None:
    assert os.geteuid() == 0
    secret_volume = tmp_path / "secret"
    secret_volume.mkdir()
    key = secret_volume / "ssh-privatekey"
    key.write_bytes(ssh_nas.client_key.private_path.read_bytes())
    key.chmod(0o444)  # as kubelet mounts a Secret (defaultMode 0444), owned by root
    pod_tmp = tmp_path / "pod-tmp"
    pod_tmp.mkdir()
    destination = ssh_nas.destination(path="/nas").model_copy(update={"key_file": str(key)})
    run = make_run({"a.bin": b"a"})
    mover.env["TMPDIR"] = str(pod_tmp)
    pushed = mover(params_for(ssh_nas, run, "push", destination=destination))
    assert pushed.returncode == 0, pushed.explain()
    assert "UNPROTECTED" not in pushed.everything
    digest = pushed.result["manifest"]["sha256"]
    verified = mover(params_for(ssh_nas, run, "verify", destination=destination, expectedManifestSha256=digest))
    assert verified.returncode == 0, verified.explain()
    assert oct(key.stat().st_mode & 0o777) == oct(0o444), "the Secret's file itself is never changed"
    assert list(pod_tmp.iterdir()) == [], "the private key copy outlived the mover"
    assert files_under(remote_dir(ssh_nas, run))["a.bin"] == b"a"
