"""Exit code + stderr -> ErrorKind, and the scrubbing every message goes through.

The operator's retry policy is keyed on the error kind (Auth and LocalVanished
fail at once, Network backs off, HashMismatch re-pushes once), so a wrong kind
is a wrong decision: a refused key retried five times, or a flaky network
declared terminal. The reference implementation called every unrecognised
failure "network" and matched "permission denied" anywhere (a local
unreadable file became an auth failure). Here the patterns come from the real
tools' stderr (samples in tests/unit/test_classify.py, captured from rclone
1.75, rsync 3.5, OpenSSH 9.2) and are checked most-specific first.

Exit codes alone are not enough: rclone exits 1 for every connect/login
failure, and rsync exits 255 (or 12) for every ssh failure; the line before
says which. Messages are rewritten for a lab admin and scrubbed, because
rclone echoes connection strings (passwords included) in its errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nassync.api.mover_io import ErrorInfo, ErrorKind

_MAX_DETAIL = 300

# Anything that can carry a credential. Order matters: PEM blocks first, then
# key=value pairs, then URL userinfo, then rclone connection strings.
_SCRUBBERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|\Z)", re.S),
        "[redacted key]",
    ),
    (
        re.compile(
            r"(?i)\b([\w-]*(?:pass|password|secret|token|key_pem|key_use_agent|pubkey|"
            r"private_?key|access_key_id|secret_access_key|session_token|bearer|sas_url|"
            r"client_secret|account_key))(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;'\"]+)"
        ),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1[redacted]@"),
    # JSON inside a Go-quoted string, as rclone's REST client prints an error body (%q):
    # returned body: "{\"pass\":\"x\"}". Before the plain JSON rule, which the backslashes defeat.
    (
        re.compile(
            r"(?i)(\\[\"'][\w-]*(?:pass|password|secret|token|key|auth|credential)[\w-]*\\[\"']\s*:\s*)"
            r"(\\\"(?:[^\"\\]|\\[^\"])*\\\"|[^\s,}\\]+)"
        ),
        r'\1\\"[redacted]\\"',
    ),
    # JSON and quoted keys: "pass": "x", 'secret_access_key': 'y'.
    (
        re.compile(
            r"(?i)([\"'][\w-]*(?:pass|password|secret|token|key|auth|credential)[\w-]*[\"']\s*:\s*)"
            r"(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,}]+)"
        ),
        r'\1"[redacted]"',
    ),
    # HTTP authorization headers: Authorization: Basic dXNlcjpwdw==, Bearer ...
    (re.compile(r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*)(?:\w+\s+)?[^\s,;]+"), r"\1[redacted]"),
    # user:password@host without a scheme (rsync/ssh style targets with a password).
    (re.compile(r"(?<![\w/:@.-])([\w.+-]+):([^\s@/:]+)@(?=[\w.-])"), r"\1:[redacted]@"),
    # rclone's config parser echoes the line it could not parse.
    (re.compile(r"(?i)(could not parse line:?)[^\n]*"), r"\1 [redacted]"),
    # rclone on-the-fly remotes: ":sftp,host=h,pass=x:/path" -> keep only the backend name.
    (re.compile(r"(^|[\s\"'(])(:[a-z0-9]+),[^\s\"':]*(?:'[^']*'[^\s\"':]*)*:"), r"\1\2,[redacted]:"),
)


# Lines that echo configuration verbatim; never quoted in a message.
_UNQUOTABLE = re.compile(r"could not parse line|failed to load config file", re.I)

_TOKEN = re.compile(r"(?<![\w/.+=-])[A-Za-z0-9+/_=-]{40,}")


def _looks_like_key_material(token: str) -> bool:
    """Long base64-ish runs: key bodies, obscured passwords, tokens; not paths or digests."""
    if token.startswith("/") or token.count("/") > 2:
        return False  # a path
    if all(ch in "0123456789abcdefABCDEF" for ch in token):
        return False  # a digest: digests are what we report
    if sum(token.count(sep) for sep in "-_") > 2:
        return False  # a name made of words (Run_2026-11-28T10-15_...), not random bytes
    classes = (str.isupper, str.islower, str.isdigit)
    return all(any(test(c) for c in token) for test in classes)


def scrub(text: str) -> str:
    """Remove anything that looks like a secret; used on every message and log line."""
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return _TOKEN.sub(lambda m: "[redacted]" if _looks_like_key_material(m.group(0)) else m.group(0), text)


@dataclass(frozen=True)
class Rule:
    """One stderr pattern and what it means for the retry policy."""

    kind: ErrorKind
    pattern: re.Pattern[str]
    message: str  # what a lab admin reads; `{detail}` is the matching line
    quote: bool = True  # False: the line may hold a secret and is never shown


def rule(kind: ErrorKind, pattern: str, message: str, *, quote: bool = True) -> Rule:
    return Rule(kind=kind, pattern=re.compile(pattern, re.I), message=message, quote=quote)


# Most specific first: a host key failure also prints "connection unexpectedly
# closed", and a vanished local file also prints "Attempt 1/1 failed".
SHARED_RULES: tuple[Rule, ...] = (
    rule(
        ErrorKind.AUTH,
        r"knownhosts: key mismatch|REMOTE HOST IDENTIFICATION HAS CHANGED|"
        r"Host key verification failed|knownhosts: key is unknown",
        "the NAS host key does not match the known_hosts in the target's secret "
        "(NAS reinstalled, or someone in between): {detail}",
    ),
    rule(
        ErrorKind.AUTH,
        r"unable to authenticate|Permission denied \((?:publickey|password)[^)]*\)|"
        r"Too many authentication failures|The attempted logon is invalid|"
        r"401 Unauthorized|SignatureDoesNotMatch|InvalidAccessKeyId|"
        r"UNPROTECTED PRIVATE KEY FILE",
        "the NAS refused the credentials in the target's secret: {detail}",
    ),
    rule(
        ErrorKind.CONFIG,
        r"No user exists for uid",
        "ssh refuses to run as the mover's uid, which has no passwd entry; the nassync image gives any uid "
        "one through nss_wrapper (Debian's libnss-wrapper): use it, or add the uid to your image: {detail}",
    ),
    rule(
        ErrorKind.CONFIG,
        r"didn't find section in config file|couldn't find type of fs|"
        r"failed to load config|Failed to load config|Couldn't decrypt|"
        r"unable to read private key|failed to read private key file|"
        r"Load key .*: (?:invalid format|No such file)|no such identity|"
        r"subsystem request failed|"
        r"unknown flag|Bad configuration option|Bad port",
        "the transfer is misconfigured (check the target's secret and destination): {detail}",
    ),
    rule(
        ErrorKind.LOCAL_VANISHED,
        r"failed to open source object.*(?:no such file|not exist)|"
        r"some files vanished before they could be transferred|"
        r"file has vanished|\[sender\] change_dir .* failed: No such file",
        "files of the run disappeared from the local disk during the transfer: {detail}",
    ),
    rule(
        ErrorKind.NO_SPACE,
        r"no space left on device|disk quota exceeded|quota exceeded|ENOSPC|"
        r"insufficient (?:storage|space)|not enough space|\(28\)",
        "the NAS is full (no space left on device); free space there or raise its quota, "
        "the push is retried with backoff: {detail}",
    ),
    # After the AUTH rules: ssh's "Permission denied (publickey)" is a refused key, not a mode.
    rule(
        ErrorKind.PERMISSION,
        r"\[sender\].*(?:Permission denied \(13\)|Operation not permitted \(1\))|"
        r"source object.*permission denied",
        "the mover's uid may not read a file of the run (its owner or mode changed after the gate checked it): "
        "{detail}",
    ),
    rule(
        ErrorKind.PERMISSION,
        r"Permission denied \(13\)|Operation not permitted \(1\)|SSH_FX_PERMISSION_DENIED|: permission denied\b|"
        r"read-only file system",
        "the destination refuses to let the mover write there: give the NAS directory (or the mounted volume's "
        "root) to the user the copy runs as — for a volume the mover's uid/gid (fsGroup, the NFS export's "
        "squash settings), for ssh/sftp the NAS account — or mount it read-write: {detail}",
    ),
    rule(
        ErrorKind.NETWORK,
        r"connection refused|no route to host|network is unreachable|"
        r"no such host|Could not resolve hostname|Name or service not known|"
        r"i/o timeout|timed out|connection reset|connection lost|broken pipe|"
        r"connection unexpectedly closed|Connection closed by|unexpected EOF|"
        r"\{Network Name Not Found\}|data I/O timeout",
        "the NAS could not be reached or the connection dropped: {detail}",
    ),
    rule(
        ErrorKind.UNKNOWN,
        r"source file is being updated|can't copy - source file is being updated",
        "a file of the run changed while it was being copied (run not quiet?): {detail}",
    ),
)

# rsync exit codes whose meaning needs no stderr (docs/transports.md, "rsync over ssh").
RSYNC_EXIT_KINDS: dict[int, tuple[ErrorKind, str]] = {
    24: (ErrorKind.LOCAL_VANISHED, "files of the run vanished during the transfer"),
    30: (ErrorKind.NETWORK, "the NAS stopped answering (rsync I/O timeout)"),
    35: (ErrorKind.NETWORK, "timed out connecting to the NAS"),
    1: (ErrorKind.CONFIG, "rsync rejected its arguments"),
    2: (ErrorKind.CONFIG, "rsync versions on both sides are incompatible"),
    127: (ErrorKind.CONFIG, "rsync is not installed on the NAS"),
}

RCLONE_EXIT_KINDS: dict[int, tuple[ErrorKind, str]] = {
    2: (ErrorKind.CONFIG, "rclone rejected its arguments"),
    5: (ErrorKind.NETWORK, "a temporary error; a retry may succeed"),
    6: (ErrorKind.UNKNOWN, "rclone refused to overwrite or retry"),
    7: (ErrorKind.UNKNOWN, "rclone reported a fatal error"),
}


def json_log_messages(lines: Iterable[str]) -> list[str]:
    """Plain messages from rclone `--use-json-log` stderr (non-JSON lines pass through).

    Only error-ish JSON lines are kept: progress/stat lines would drown the
    line that explains the failure.
    """
    messages: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("{"):
            try:
                record = json.loads(stripped)
            except ValueError:
                messages.append(stripped)
                continue
            if isinstance(record, dict) and str(record.get("level", "")).lower() in {
                "error",
                "critical",
                "fatal",
            }:
                messages.append(str(record.get("msg", "")))
            continue
        messages.append(stripped)
    return messages


def _shorten(line: str) -> str:
    line = scrub(" ".join(line.split()))
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


def classify(
    *,
    tool: str,
    returncode: int,
    messages: Sequence[str],
    exit_kinds: dict[int, tuple[ErrorKind, str]] | None = None,
    rules: Sequence[Rule] = SHARED_RULES,
) -> ErrorInfo:
    """Classify a failed command. `messages` are its stderr lines, oldest first."""
    lines = [m for m in messages if m.strip()]
    for rule in rules:
        for line in lines:
            if rule.pattern.search(line):
                detail = _shorten(line) if rule.quote else "(not shown)"
                return ErrorInfo(kind=rule.kind, message=scrub(f"{tool}: " + rule.message.format(detail=detail)))
    # An unmatched line is shown, so the secret-bearing ones must never get here.
    lines = [m for m in lines if not _UNQUOTABLE.search(m)]
    last = _shorten(lines[-1]) if lines else "no error output"
    if exit_kinds and returncode in exit_kinds:
        kind, text = exit_kinds[returncode]
        return ErrorInfo(kind=kind, message=scrub(f"{tool}: {text} (exit {returncode}): {last}"))
    if returncode < 0:
        return ErrorInfo(
            kind=ErrorKind.UNKNOWN,
            message=f"{tool} was stopped by signal {-returncode} before it finished",
        )
    return ErrorInfo(kind=ErrorKind.UNKNOWN, message=scrub(f"{tool} failed (exit {returncode}): {last}"))
