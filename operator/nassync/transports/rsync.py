"""rsync-over-ssh transport: any NAS with sshd, rsync, and coreutils.

Push: `rsync -a --partial-dir=.nassync-rsync-partial --mkpath` with the
source given WITH a trailing slash, so the run's contents land in
`<path>/<runPath>/` (the reference implementation omitted the slash and nested
`<run>/<run>/`, which then never verified). rsync writes each file to a
temporary name and renames it, and `--partial-dir` keeps interrupted pieces
out of final names. After a hash mismatch the push adds `--checksum`: rsync's
quick check (size and mtime) would leave a corrupted NAS file of the same size
and mtime in place. ssh is locked down: only the key (`IdentitiesOnly`), only
the mounted known_hosts (`StrictHostKeyChecking=yes`), never a prompt
(`BatchMode`), and no user ssh config (`-F /dev/null`) so nothing on the pod's
image changes it. The key is used from a private 0600 copy: ssh refuses a key
its own user could share (a Secret volume's 0444/0440 files, as root).
rsync has no timetable, so `--bwlimit` is the limit in force when it starts;
the push restarts it with the new limit at each window change.

Remote SHA-256 (`RemoteHash`): one ssh command running `find -print0 | sort -z
| xargs -0 sha256sum -z`, NUL-separated so names with spaces, newlines or
backslashes parse exactly. `Download`: one ssh command streams the run as a
tar archive and we hash each member locally (one connection, not one per
file), for NAS boxes whose shell lacks sha256sum.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nassync.api.mover_io import Bandwidth, ErrorInfo, ErrorKind, RsyncDestination, remote_run_path
from nassync.transports.bandwidth import limit_at
from nassync.transports.base import (
    DEFAULT_PUSH,
    Command,
    HashMethod,
    PushOptions,
    TransferProgress,
    TransportError,
    anchored,
    path_length_problem,
    private_copy,
    run_probe,
)
from nassync.transports.classify import RSYNC_EXIT_KINDS, SHARED_RULES, classify

# Not a name a run would hold, unlike rsync's usual `.rsync-partial`; the gate
# still refuses a run that has it (rsync would silently skip it).
PARTIAL_DIR = ".nassync-rsync-partial"
_CONNECT_TIMEOUT_S = 15
_IO_TIMEOUT_S = 300
_MISSING_DIR_RC = 66  # our own marker from the remote script: the run dir is not there
_HASH_BUFFER = 1 << 20
# " 1,234,567  45%  1.23MB/s    0:00:05 (xfr#3, to-chk=5/10)"
_PROGRESS2 = re.compile(
    r"^\s*(?P<bytes>[\d,]+)\s+(?P<pct>\d+)%\s+(?P<rate>[\d.]+)(?P<unit>[kMGT]?B)/s\s+"
    r"(?P<eta>\d+:\d{2}:\d{2})(?:\s+\(xfr#(?P<xfr>\d+))?"
)
_UNITS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass(frozen=True)
class RsyncTransport:
    destination: RsyncDestination
    rsync_binary: str = "rsync"
    ssh_binary: str = "ssh"

    @property
    def name(self) -> str:
        return "rsync"

    @property
    def follows_timetable(self) -> bool:
        return False  # rsync has one --bwlimit per run

    @property
    def supports_remote_sha256(self) -> bool:
        return True  # coreutils sha256sum over ssh

    @property
    def _login(self) -> str:
        return f"{self.destination.user}@{self.destination.host}"

    def _remote_path(self, run_path: str) -> str:
        return remote_run_path(self.destination.path, run_path)

    def remote_dir(self, *, run_path: str) -> str:
        return f"{self._login}:{self._remote_path(run_path)}"

    def ssh_argv(self) -> list[str]:
        """ssh client options: the Secret's key and known_hosts only, never a prompt."""
        return [
            self.ssh_binary,
            "-F",
            "/dev/null",
            "-i",
            private_key_copy(self.destination.key_file),
            "-p",
            str(self.destination.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.destination.known_hosts_file}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            f"ConnectTimeout={_CONNECT_TIMEOUT_S}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
            "-o",
            "LogLevel=ERROR",
        ]

    def name_problem(self, relpath: str) -> str | None:
        # A path too long to open fails inside the tools (rsync's sender, sha256sum on the NAS).
        return partial_dir_problem(relpath) or path_length_problem(relpath)

    def config_problem(self) -> str | None:
        return None

    def local_reads(self) -> list[str]:
        return [os.path.dirname(self.destination.key_file), os.path.dirname(self.destination.known_hosts_file)]

    def push_command(self, *, source: str, run_path: str, bandwidth: Bandwidth, now: datetime,
                     options: PushOptions = DEFAULT_PUSH) -> Command:
        return copy_command(self.rsync_binary, source=source, target=f"{self.remote_dir(run_path=run_path)}/",
                            bandwidth=bandwidth, now=now, options=options, remote_shell=self.ssh_argv())

    def parse_push_line(self, line: str) -> TransferProgress | None:
        return parse_progress2(line)

    def push_error_messages(self, lines: Sequence[str]) -> list[str]:
        return [line for line in lines if line.strip() and parse_progress2(line) is None]

    def classify(self, *, returncode: int, messages: Sequence[str]) -> ErrorInfo:
        return self._classify(tool="rsync", returncode=returncode, messages=messages)

    def _classify(self, *, tool: str, returncode: int, messages: Sequence[str]) -> ErrorInfo:
        return classify(
            tool=tool,
            returncode=returncode,
            messages=messages,
            exit_kinds=RSYNC_EXIT_KINDS,
            rules=SHARED_RULES,
        )

    def _ssh(self, script: str) -> Command:
        return Command(
            argv=(*self.ssh_argv(), self._login, script),
            env={"LC_ALL": "C"},
        )

    def _run_dir_script(self, run_path: str, body: str) -> str:
        """A bash script run inside the remote run dir; exits 66 when it does not exist."""
        inner = f"cd -- {shlex.quote(self._remote_path(run_path))} 2>/dev/null || exit {_MISSING_DIR_RC}; {body}"
        return f"bash -o pipefail -c {shlex.quote(inner)}"

    def remote_hashes(self, *, run_path: str, method: HashMethod) -> dict[str, str]:
        if method == "RemoteHash":
            return self._listed_hashes(run_path)
        return self._downloaded_hashes(run_path)

    def _listed_hashes(self, run_path: str) -> dict[str, str]:
        script = self._run_dir_script(
            run_path, "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum -z --"
        )
        done = run_probe(self._ssh(script))
        if done.returncode == _MISSING_DIR_RC:
            return {}
        if done.returncode != 0:
            raise TransportError(self._probe_error(done.returncode, done.stderr))
        return parse_sha256sum_z(done.stdout)

    def _downloaded_hashes(self, run_path: str) -> dict[str, str]:
        script = self._run_dir_script(run_path, "tar -cf - .")
        command = self._ssh(script)
        proc = subprocess.Popen(
            list(command.argv),
            env=command.full_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        hashes: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                for member in archive:
                    name = _member_path(member.name)
                    if member.islnk():
                        # A hard link carries no data; it has the bytes of its target.
                        target = hashes.get(_member_path(member.linkname))
                        if target is not None:
                            hashes[name] = target
                        continue
                    if not member.isreg():
                        continue
                    stream = archive.extractfile(member)
                    if stream is None:
                        continue
                    digest = hashlib.sha256()
                    while chunk := stream.read(_HASH_BUFFER):
                        digest.update(chunk)
                    hashes[name] = digest.hexdigest()
        except tarfile.ReadError:
            pass  # an empty stream (ssh failed, or dir missing): the exit code says which
        finally:
            proc.stdout.close()
            stderr = proc.stderr.read().decode(errors="replace")
            rc = proc.wait()
        if rc == _MISSING_DIR_RC:
            return {}
        if rc != 0:
            raise TransportError(self._probe_error(rc, stderr))
        return hashes

    def _probe_error(self, rc: int, stderr: str) -> ErrorInfo:
        info = self._classify(tool="ssh", returncode=rc, messages=stderr.splitlines())
        if rc != 255 and info.kind == ErrorKind.UNKNOWN:
            # The remote command ran but failed (no bash/sha256sum/tar, unreadable file).
            return ErrorInfo(
                kind=ErrorKind.CONFIG if rc in {126, 127} else ErrorKind.UNKNOWN,
                message=f"hashing on the NAS failed: {info.message}",
            )
        return info

    def read_remote_file(self, *, run_path: str, relpath: str) -> bytes | None:
        quoted = shlex.quote(f"{self._remote_path(run_path)}/{relpath}")
        done = run_probe(self._ssh(f"if [ -f {quoted} ]; then cat -- {quoted}; else exit {_MISSING_DIR_RC}; fi"))
        if done.returncode == _MISSING_DIR_RC:
            return None
        if done.returncode != 0:
            raise TransportError(self._probe_error(done.returncode, done.stderr))
        return done.stdout

    def find_remote_files(self, *, run_path: str, name: str) -> list[str]:
        script = self._run_dir_script(run_path, f"find . -type f -name {shlex.quote(name)} -print0")
        done = run_probe(self._ssh(script))
        if done.returncode == _MISSING_DIR_RC:
            return []
        if done.returncode != 0:
            raise TransportError(self._probe_error(done.returncode, done.stderr))
        return [_member_path(p.decode("utf-8", errors="surrogateescape")) for p in done.stdout.split(b"\0") if p]


def partial_dir_problem(relpath: str) -> str | None:
    """rsync carries any byte string exactly; only its partial-dir name is taken (excluded everywhere)."""
    if PARTIAL_DIR in relpath.split("/"):
        return f"is named {PARTIAL_DIR}, which rsync keeps for interrupted transfers and never copies"
    return None


def copy_command(rsync: str, *, source: str, target: str, bandwidth: Bandwidth, now: datetime,
                 options: PushOptions, remote_shell: list[str] | None = None, fsync: bool = False) -> Command:
    """The rsync copy of `source/` into `target` (never a mirror), shared by the ssh and volume transports."""
    argv = [rsync, "-a", f"--partial-dir={PARTIAL_DIR}", "--mkpath", f"--timeout={_IO_TIMEOUT_S}",
            "--info=progress2,stats2"]
    if remote_shell is not None:
        argv += ["-e", shlex.join(remote_shell)]
    if fsync:
        argv.append("--fsync")  # a volume's copy is on its disk, not only in this node's page cache
    limit = limit_at(bandwidth, now)
    if limit > 0:
        argv.append(f"--bwlimit={limit}")
    if options.compare_content:
        # The quick check (size and mtime) would skip a corrupted NAS file
        # whose size and mtime still match: compare contents instead.
        argv.append("--checksum")
    argv += [f"--exclude={anchored(relpath)}" for relpath in options.exclude]
    stdin = None
    if options.only is not None:
        argv.append("--files-from=-")
        stdin = "".join(f"{p}\n" for p in options.only).encode()
    # Trailing slashes on both sides: copy the run's *contents* into <path>/<runPath>/.
    argv += [source.rstrip("/") + "/", target]
    return Command(argv=tuple(argv), env={"LC_ALL": "C"}, stdin=stdin)


def parse_progress2(line: str) -> TransferProgress | None:
    """A progress sample from one `--info=progress2` line, or None."""
    match = _PROGRESS2.match(line)
    if match is None:
        return None
    done = int(match["bytes"].replace(",", ""))
    rate = float(match["rate"]) * _UNITS.get(match["unit"], 1)
    h, m, s = (int(x) for x in match["eta"].split(":"))
    return TransferProgress(
        bytes=done,
        bytes_per_second=rate,
        # The final line's time column is elapsed time, not an ETA; only use it mid-way.
        eta_seconds=float(h * 3600 + m * 60 + s) if match["xfr"] is None else None,
        files=int(match["xfr"]) if match["xfr"] else None,
    )


def private_key_copy(key_file: str) -> str:
    """A 0600 copy of `key_file` owned by this process (transports.base.private_copy).

    A Secret volume's files are 0444 (or 0440 with fsGroup) and owned by root:
    a mover running as root owns a key others may read, which ssh refuses
    ("UNPROTECTED PRIVATE KEY FILE").
    """
    try:
        data = Path(key_file).read_bytes()
    except OSError:
        return key_file  # let ssh report the missing or unreadable key in its own words
    return private_copy(key_file, data)


def _member_path(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def parse_sha256sum_z(data: bytes) -> dict[str, str]:
    """Parse `sha256sum -z` output of `./relpath` names into relpath -> digest."""
    hashes: dict[str, str] = {}
    for record in data.split(b"\0"):
        if not record:
            continue
        digest, sep, rest = record[:64], record[64:66], record[66:]
        if sep not in (b"  ", b" *"):
            raise TransportError(ErrorInfo(kind=ErrorKind.UNKNOWN, message="unexpected sha256sum output on the NAS"))
        name = rest.decode("utf-8", errors="surrogateescape")
        hashes[_member_path(name)] = digest.decode("ascii").lower()
    return hashes
