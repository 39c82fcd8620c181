"""The transport interface: everything the mover needs from "a kind of NAS".

Like VolSync's mover catalog (`transports/catalog.py` maps a destination
type to its transport), each destination type is one small object that knows
(1) the argv and env of a push, (2) how to get the SHA-256 of every file of a
remote run directory (`RemoteHash`: the NAS hashes; `Download`: we read the
bytes back and hash them ourselves, the only honest option where the NAS has
no SHA-256), (3) how to read the remote owner marker, and (4) how to turn a
failure into an `ErrorKind`. The mover steps (mover/steps/) are written once
against this Protocol.

Secrets never go on argv: rclone echoes its arguments (connection strings
included) in error messages, and argv is world-readable in /proc. Config and
keys are mounted files, named by path in env vars or in ssh `-i`/`-o` options.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from nassync.api.mover_io import (
    Bandwidth,
    ErrorInfo,
    ErrorKind,
)

HashMethod = Literal["RemoteHash", "Download"]
# The copy tools open a file as /proc/self/fd/N/<relpath> (rclone) or hash it on
# the NAS as ./<relpath> (rsync's verify): a path near PATH_MAX (4096 bytes with
# its NUL) fails inside the tool with an error no lab admin can act on. Measured:
# rclone fails from about 4,075 bytes of relpath, sha256sum at 4,094.
MAX_COPY_RELPATH_BYTES = 4000
# A remote hash listing of a large run can take hours (the NAS reads every
# byte); the bound is there so that a NAS that hangs does not hang the pod forever.
PROBE_TIMEOUT_S = 6 * 3600


@dataclass(frozen=True)
class Command:
    """A process to run: argv plus env additions (env carries file paths, never secrets).

    `pass_fds` are descriptors the process inherits (the opened run directory,
    named to the tool as /proc/self/fd/N); `stdin` is fed to it (file lists).
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    pass_fds: tuple[int, ...] = ()
    stdin: bytes | None = None
    # Called in the tool's process between fork and exec (the push's Landlock ruleset, mover/confine.py).
    preexec: Callable[[], None] | None = field(default=None, compare=False)

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}


@dataclass(frozen=True)
class TransferProgress:
    """One progress sample parsed from a transfer tool's output."""

    bytes: int
    total_bytes: int | None = None
    bytes_per_second: float | None = None
    eta_seconds: float | None = None
    files: int | None = None  # files transferred so far


class TransportError(Exception):
    """A remote operation failed; `info` is already classified and scrubbed."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


@dataclass(frozen=True)
class PushOptions:
    """How one push runs.

    `compare_content`: decide what to send by content, not size and time
    (after a hash mismatch, so that a corrupted NAS file of the same size and
    mtime is replaced). `exclude`: relpaths left out of this copy (completion
    markers, sent last). `only`: copy just these relpaths.
    """

    compare_content: bool = False
    exclude: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None


DEFAULT_PUSH = PushOptions()


def anchored(relpath: str) -> str:
    """A filter rule matching exactly `relpath` below the copy's root, for rclone and rsync.

    Only plain names reach here (completion markers and our cache files,
    checked against a safe character set), so no glob character needs escaping.
    """
    return "/" + relpath.strip("/")


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: str


def run_probe(command: Command, *, timeout: float = PROBE_TIMEOUT_S) -> Completed:
    """Run a remote command to completion, capturing both streams."""
    try:
        proc = subprocess.run(
            list(command.argv),
            env=command.full_env(),
            input=command.stdin,
            stdin=None if command.stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            pass_fds=command.pass_fds,
        )
    except FileNotFoundError as exc:
        raise TransportError(
            ErrorInfo(kind=ErrorKind.CONFIG, message=f"{command.argv[0]} is not installed: {exc}")
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise TransportError(
            ErrorInfo(
                kind=ErrorKind.NETWORK,
                message=f"{Path(command.argv[0]).name} did not finish within {timeout:.0f}s",
            )
        ) from exc
    return Completed(
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr.decode(errors="replace"),
    )


class Transport(Protocol):
    """One destination type. Implementations are frozen dataclasses around a Destination."""

    @property
    def name(self) -> str:
        """Tool name used in messages ("rclone", "rsync")."""
        ...

    @property
    def supports_remote_sha256(self) -> bool:
        """True when the NAS itself can compute SHA-256 (verify method `Auto` uses it)."""
        ...

    @property
    def follows_timetable(self) -> bool:
        """True when the tool changes its rate by the bandwidth timetable itself.

        When False (rsync), the push restarts the tool at each window change with
        the new limit; the copy resumes from its partial files.
        """
        ...

    def remote_dir(self, *, run_path: str) -> str:
        """Human-readable remote location of the run (for messages; no secrets)."""
        ...

    def name_problem(self, relpath: str) -> str | None:
        """Why a file of this name cannot be copied and proven, or None if it can."""
        ...

    def config_problem(self) -> str | None:
        """Why this destination cannot hold a copy at all (checked by the gate and push), or None."""
        ...

    def local_reads(self) -> list[str]:
        """Local directories the push's tool reads besides the run (Secret files, a mounted destination)."""
        ...

    def push_command(self, *, source: str, run_path: str, bandwidth: Bandwidth, now: datetime,
                     options: PushOptions = DEFAULT_PUSH) -> Command:
        """Copy (never mirror) `source/` into the remote run directory.

        `source` is a path the tool reads through (/proc/self/fd/N of the opened
        run, whose descriptor the caller passes to the process).
        """
        ...

    def parse_push_line(self, line: str) -> TransferProgress | None:
        """A progress sample from one line of push output, or None if it is not one."""
        ...

    def push_error_messages(self, lines: Sequence[str]) -> list[str]:
        """The lines of push output that can explain a failure."""
        ...

    def remote_hashes(self, *, run_path: str, method: HashMethod) -> dict[str, str]:
        """relpath -> SHA-256 of every regular file under the remote run directory.

        A missing remote directory is an empty mapping (everything is "missing"),
        not an error. Raises TransportError for anything else.
        """
        ...

    def read_remote_file(self, *, run_path: str, relpath: str) -> bytes | None:
        """The bytes of `<run>/<relpath>` on the NAS (`run_path` relative to the
        destination root), or None when there is no such file."""
        ...

    def find_remote_files(self, *, run_path: str, name: str) -> list[str]:
        """Relpaths of every file called `name` below the remote run directory ([] if it is absent)."""
        ...

    def classify(self, *, returncode: int, messages: Sequence[str]) -> ErrorInfo:
        """Turn a failed command's exit code + stderr lines into an ErrorKind."""
        ...


def path_length_problem(relpath: str) -> str | None:
    """Why a relpath is too long for the copy tools to open, or None."""
    size = len(os.fsencode(relpath))
    if size > MAX_COPY_RELPATH_BYTES:
        return (f"path is {size:,} bytes; the copy tools cannot open paths longer than "
                f"{MAX_COPY_RELPATH_BYTES:,} bytes (shorten or move it)")
    return None


def resolve_method(transport: Transport, requested: str) -> HashMethod:
    """`Auto` -> RemoteHash when the NAS hashes SHA-256 itself, else Download."""
    if requested == "RemoteHash":
        return "RemoteHash"
    if requested == "Download":
        return "Download"
    return "RemoteHash" if transport.supports_remote_sha256 else "Download"


_PRIVATE_COPIES: dict[str, str] = {}


def private_copy(source: str, data: bytes) -> str:
    """A 0600 file holding `data`, owned by this process, in a private temporary directory.

    One per `source` for the life of the process (the pod's /tmp is an
    emptyDir). Used where a tool needs a file the mounted Secret cannot give
    as it is: ssh refuses a key others may read, and a replica's rclone config
    in a cleanup pod names its companion files where the Secret is not.
    """
    copy = _PRIVATE_COPIES.get(source)
    if copy is not None and os.path.exists(copy):
        return copy
    directory = tempfile.mkdtemp(prefix="nassync-private-")
    atexit.register(shutil.rmtree, directory, True)
    copy = os.path.join(directory, os.path.basename(source) or "file")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    _PRIVATE_COPIES[source] = copy
    return copy


def private_dirs() -> list[str]:
    """The directories of this process's private copies (a confined copy tool must still read them)."""
    return sorted({os.path.dirname(copy) for copy in _PRIVATE_COPIES.values()})
