"""The process node's sandbox keeps the host's binaries reachable wherever the checkout lives."""

from __future__ import annotations

from nassync_dev.sandbox import Mount, bwrap_argv, hidden_host_dirs


def test_dirs_under_private_mounts_are_the_hidden_ones() -> None:
    assert hidden_host_dirs(["/tmp/ci-clone/.venv", "/usr/lib", "/run/x", "/tmp/ci-clone/.venv"]) == (
        "/tmp/ci-clone/.venv", "/run/x")


def test_hidden_dirs_are_bound_back_read_only_after_the_private_tmp() -> None:
    argv = bwrap_argv(command=["true"], mounts=[Mount("/tmp/ci/.venv", "/tmp/ci/.venv", True)],
                      working_dir=None, run_as=None)
    tmpfs = argv.index("/tmp", argv.index("--tmpfs"))
    bind = argv.index("--ro-bind", tmpfs)
    assert argv[bind:bind + 3] == ["--ro-bind", "/tmp/ci/.venv", "/tmp/ci/.venv"]
    # parents are created traversable for a non-root container
    assert argv[bind - 4:bind] == ["--perms", "0755", "--dir", "/tmp/ci"]
