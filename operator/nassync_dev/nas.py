"""Loopback "NAS" endpoints for mover tests and the demo.

The mover's promises (bytes identical on the NAS, nothing nested, errors
classified honestly) only mean something when checked against the real tools,
so tests talk to real servers on 127.0.0.1 instead of stubs:

- `SshNas`: OpenSSH `sshd` with key-only auth, for the rsync transport (and its
  `sha256sum`/`tar` remote commands). Everything it needs (host key, client
  key, authorized_keys, known_hosts, config) lives in one private directory.
- `RcloneSftpNas`: `rclone serve sftp`, which (rclone >= 1.71) answers
  `sha256sum` itself, for the rclone transport. It writes an rclone.conf with a
  `[nas]` section so the mover is configured exactly as a SyncTarget would be.

Both start on a free port, wait for a readiness condition (never a fixed
sleep), are idempotent to start/stop, and are context managers. Keys are made
with `cryptography` so no `ssh-keygen` is needed for the rclone endpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nassync.api.mover_io import RcloneDestination, RsyncDestination
from nassync.transports.rclone import find_rclone

SSHD = "/usr/sbin/sshd"  # sshd refuses to re-exec unless started by absolute path
_READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """A port that was free a moment ago; the server binds it right after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_line: str  # "ssh-ed25519 AAAA..."


def make_keypair(path: Path) -> KeyPair:
    """Write an OpenSSH ed25519 private key (0600) and return its public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.write_bytes(private)
    path.chmod(0o600)  # ssh rejects group/world-readable keys
    public_line = public.decode()
    path.with_name(path.name + ".pub").write_text(public_line + "\n")
    return KeyPair(private_path=path, public_line=public_line)


class _Server:
    """A child process that is ready once a line on its stderr matches."""

    _ready_marker: str = ""

    def __init__(self, *, root: Path | None = None, workdir: Path | None = None) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="nassync-nas-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = Path(root or self.workdir / "root")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = make_keypair(self.workdir / "host_ed25519")
        self.client_key = make_keypair(self.workdir / "client_ed25519")
        self.authorized_keys = self.workdir / "authorized_keys"
        self.authorized_keys.write_text(self.client_key.public_line + "\n")
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key.public_line}\n")
        self.log_path = self.workdir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_lines: list[str] = []
        self._lock = threading.Lock()

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Hook for servers that need files or dirs before they start."""

    def _env(self) -> dict[str, str]:
        """Environment additions for the server (credentials go here, never on its argv)."""
        return {}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        with self._lock:
            return "".join(self._log_lines)

    def start(self) -> Self:
        if self.running:
            return self
        self._prepare()
        with self._lock:
            self._log_lines = []
        # A new process group so stop() can end the server and anything it forked.
        proc = subprocess.Popen(
            self._argv(),
            env={**os.environ, **self._env()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._proc = proc
        # The server runs in its own session, so it would outlive a script that forgets stop().
        atexit.register(self.stop)
        ready = threading.Event()
        self._pump_thread = threading.Thread(target=self._pump, args=(proc, ready), daemon=True)
        self._pump_thread.start()
        if not ready.wait(_READY_TIMEOUT_S) or proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{type(self).__name__} did not start:\n{self.log_text()}")
        return self

    def _pump(self, proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert proc.stderr is not None
        with self.log_path.open("ab") as log:
            for raw in iter(proc.stderr.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace")
                with self._lock:
                    self._log_lines.append(line)
                if self._ready_marker in line:
                    ready.set()
        ready.set()  # process ended: let start() notice instead of waiting out the timeout

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Closing stderr under the reader thread would raise in it: let it reach EOF first.
        pump = getattr(self, "_pump_thread", None)
        if pump is not None:
            pump.join(timeout=5)
        if proc.stderr is not None and (pump is None or not pump.is_alive()):
            proc.stderr.close()

    def wait_for_log(self, predicate: Callable[[str], bool], *, timeout: float = 10.0) -> bool:
        """Wait for the server log to satisfy `predicate` (e.g. an auth line appeared)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.log_text()):
                return True
            time.sleep(0.05)
        return predicate(self.log_text())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SshNas(_Server):
    """OpenSSH sshd serving `root` to the current user with one client key."""

    _ready_marker = "Server listening"

    def __init__(self, *, root: Path | None = None, workdir: Path | None = None) -> None:
        super().__init__(root=root, workdir=workdir)
        self.user = getpass.getuser()
        self.config_path = self.workdir / "sshd_config"

    def _prepare(self) -> None:
        # sshd's privilege separation needs this root-owned, non-writable directory.
        run_sshd = Path("/run/sshd")
        run_sshd.mkdir(mode=0o755, exist_ok=True)
        run_sshd.chmod(0o755)
        self.config_path.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key.private_path}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    # Keys live under /tmp, which StrictModes would reject.
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "MaxStartups 100:30:200",
                    "",
                ]
            )
        )
        check = subprocess.run([SSHD, "-t", "-f", str(self.config_path)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"sshd config rejected: {check.stderr.strip()}")

    def _argv(self) -> list[str]:
        return [SSHD, "-D", "-e", "-f", str(self.config_path)]

    def destination(self, *, path: str = "/nas", key_file: Path | None = None) -> RsyncDestination:
        """An rsync destination whose `path` is relative to `root` (made absolute here)."""
        return RsyncDestination(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            path=str(self.root) + "/" + path.strip("/"),
            keyFile=str(key_file or self.client_key.private_path),
            knownHostsFile=str(self.known_hosts),
        )


class RcloneSftpNas(_Server):
    """`rclone serve sftp` with key auth, plus a client rclone.conf pointing at it."""

    _ready_marker = "SFTP server listening"

    def __init__(self, *, root: Path | None = None, workdir: Path | None = None, rclone: str | None = None) -> None:
        super().__init__(root=root, workdir=workdir)
        self.rclone = rclone or find_rclone()
        self.config_path = self.workdir / "rclone.conf"
        self.remote_name = "nas"
        self.write_config()

    def write_config(self, *, key_file: Path | None = None, extra: str = "") -> Path:
        """(Re)write the client config; `key_file`/`extra` let tests break it on purpose."""
        self.config_path.write_text(
            f"[{self.remote_name}]\n"
            "type = sftp\n"
            "host = 127.0.0.1\n"
            f"port = {self.port}\n"
            f"user = {getpass.getuser()}\n"
            f"key_file = {key_file or self.client_key.private_path}\n"
            f"known_hosts_file = {self.known_hosts}\n"
            f"{extra}"
        )
        self.config_path.chmod(0o600)
        return self.config_path

    def _argv(self) -> list[str]:
        return [
            self.rclone,
            "serve",
            "sftp",
            str(self.root),
            "--addr",
            f"127.0.0.1:{self.port}",
            "--authorized-keys",
            str(self.authorized_keys),
            "--key",
            str(self.host_key.private_path),
            # Tests corrupt files behind the server's back; a long cache would hide that.
            "--dir-cache-time",
            "1s",
            "--config",
            "/dev/null",
            "--log-level",
            "INFO",
        ]

    def destination(self, *, path: str = "/nas", config_file: Path | None = None) -> RcloneDestination:
        """An rclone destination; the sftp path is absolute on the host, i.e. under `root`."""
        return RcloneDestination(
            remote=self.remote_name,
            path="/" + path.strip("/"),
            configFile=str(config_file or self.config_path),
        )


class RcloneS3Nas(_Server):
    """`rclone serve s3` on loopback: a real S3 protocol server (MD5 ETags only, no SHA-256), one bucket.

    Like an object store in a lab's second site: rclone's `check` against it
    would compare sizes and MD5 at best, so verify must read the bytes back.
    """

    _ready_marker = "Starting s3 server"

    def __init__(self, *, root: Path | None = None, workdir: Path | None = None, rclone: str | None = None,
                 bucket: str = "replica") -> None:
        super().__init__(root=root, workdir=workdir)
        self.rclone = rclone or find_rclone()
        self.bucket = bucket
        (self.root / bucket).mkdir(exist_ok=True)
        self.access_key = "nassync-test"
        self.secret_key = make_keypair(self.workdir / "s3-secret").public_line.split()[1][:40]
        self.config_path = self.workdir / "rclone-s3.conf"
        self.remote_name = "s3nas"
        self.config_path.write_text(
            f"[{self.remote_name}]\n"
            "type = s3\n"
            "provider = Rclone\n"
            f"endpoint = http://127.0.0.1:{self.port}\n"
            f"access_key_id = {self.access_key}\n"
            f"secret_access_key = {self.secret_key}\n"
        )
        self.config_path.chmod(0o600)

    def _env(self) -> dict[str, str]:
        # rclone splits list flags given in env as CSV: quote the pair.
        return {"RCLONE_AUTH_KEY": f'"{self.access_key},{self.secret_key}"'}

    def _argv(self) -> list[str]:
        return [self.rclone, "serve", "s3", str(self.root), "--addr", f"127.0.0.1:{self.port}",
                "--config", "/dev/null", "--dir-cache-time", "1s", "--log-level", "INFO"]

    def destination(self, *, path: str = "nas", config_file: Path | None = None) -> RcloneDestination:
        """An rclone destination in the bucket; runs land under `<bucket>/<path>`."""
        return RcloneDestination(remote=self.remote_name, path=f"{self.bucket}/{path.strip('/')}",
                                 configFile=str(config_file or self.config_path))

    def object_path(self, path: str = "nas") -> Path:
        """Where the server keeps the objects under `path` on disk (to corrupt them in tests)."""
        return self.root / self.bucket / path.strip("/")


def main() -> None:
    """Run both endpoints and print how to reach them until interrupted (`make demo`)."""
    base = Path(tempfile.mkdtemp(prefix="nassync-demo-nas-"))
    with (
        SshNas(workdir=base / "sshd") as ssh_nas,
        RcloneSftpNas(workdir=base / "rclone") as rclone_nas,
    ):
        print(f"sshd (rsync):        127.0.0.1:{ssh_nas.port} user={ssh_nas.user}")
        print(f"  serves:            {ssh_nas.root}")
        print(f"  ssh-privatekey:    {ssh_nas.client_key.private_path}")
        print(f"  known_hosts:       {ssh_nas.known_hosts}")
        print(f"rclone serve sftp:   127.0.0.1:{rclone_nas.port}")
        print(f"  serves:            {rclone_nas.root}")
        print(f"  rclone.conf:       {rclone_nas.config_path} (remote [{rclone_nas.remote_name}])")
        print("Ctrl-C to stop.", flush=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            while not stopped.wait(1.0):
                if not (ssh_nas.running and rclone_nas.running):
                    print("a NAS endpoint exited; stopping", file=sys.stderr)
                    break


if __name__ == "__main__":
    main()
