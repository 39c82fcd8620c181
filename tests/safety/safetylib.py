"""Helpers for the safety suite: runs, MoverParams, the real mover CLI (optionally mutating), tree snapshots.

Every attack goes through the real `nassync-mover` console script in a
subprocess, as a mover pod runs it. When an attack needs to change the run at
a precise moment inside a step, the subprocess is `mutating_mover.py`, which
installs the mutation at a function boundary of the mover (a deletion hook
point, the start of the copy, right after the run was opened, ...) and then
calls `nassync.mover.cli.main()`: the same code, with a deterministic
interleaving instead of a race. The plan says whether it fired, so that an
attack that never happened can not pass for one that was fended off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nassync.api.mover_io import PARAMS_ENV, RESULT_PATH_ENV, MoverParams
from nassync_dev.nas import RcloneSftpNas, SshNas
from nassync_dev.scenario import LAB_CACHE_DIR, Run, params_for

MOVER = str(Path(sys.executable).parent / "nassync-mover")
WRAPPER = Path(__file__).with_name("mutating_mover.py")
PLAN_ENV = "NASSYNC_SAFETY_PLAN"
CACHE = LAB_CACHE_DIR


@dataclass(frozen=True)
class VolumeNas:
    """A NAS mounted into the mover pod as a volume (the `volume` destination): a directory here."""

    root: Path

    def destination(self, *, path: str = "/nas") -> Any:
        from nassync.api.mover_io import VolumeDestination

        return VolumeDestination(mount=str(self.root), path=str(self.root / path.strip("/")))


Nas = SshNas | RcloneSftpNas | VolumeNas
Op = list[Any]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Filesystem operations a plan performs (interpreted by mutating_mover.py; paths absolute).
def op_write(path: Path, data: bytes) -> Op:
    """Create or truncate-and-write (same inode if it exists)."""
    return ["write", str(path), b64(data)]


def op_rewrite(path: Path, data: bytes) -> Op:
    """Overwrite from offset 0 without truncating (same inode; same size when len(data) matches)."""
    return ["rewrite", str(path), b64(data)]


def op_rename(src: Path, dst: Path) -> Op:
    return ["rename", str(src), str(dst)]


def op_symlink(target: Path | str, link: Path) -> Op:
    return ["symlink", str(target), str(link)]


def op_touch(path: Path) -> Op:
    """utime to now: content unchanged, mtime and ctime move."""
    return ["touch", str(path)]


def op_unlink(path: Path) -> Op:
    return ["unlink", str(path)]


def op_mkdir(path: Path) -> Op:
    return ["mkdir", str(path)]


@dataclass(frozen=True)
class Plan:
    """Run `ops` once, the first time the mover reaches `when` (for hook points: on file `relpath`)."""

    when: str  # hook:before-check|hook:checked|hook:renamed|before-delete|after-open|copy-start|
    #            after-remote-check|after-manifest|publish-start
    ops: Sequence[Op]
    relpath: str | None = None
    fired: Path | None = None  # written when the ops ran

    def to_json(self) -> str:
        return json.dumps({"when": self.when, "ops": list(self.ops), "relpath": self.relpath,
                           "fired": str(self.fired) if self.fired else None})


RunFactory = Callable[..., Run]


@dataclass(frozen=True)
class MoverRun:
    returncode: int
    result: dict[str, Any]
    result_text: str
    stdout: str
    stderr: str
    fired: bool = False

    @property
    def kind(self) -> str | None:
        error = self.result.get("error")
        return str(error["kind"]) if error else None

    @property
    def message(self) -> str:
        error = self.result.get("error")
        return str(error["message"]) if error else ""

    @property
    def everything(self) -> str:
        """All the pod shows anyone: termination message, stdout (progress, result), stderr (logs)."""
        return self.result_text + self.stdout + self.stderr

    def explain(self) -> str:
        return f"rc={self.returncode}\nresult={self.result_text}\nstderr={self.stderr[-3000:]}"


@dataclass
class Mover:
    """Runs the real CLI; `plan` runs it through mutating_mover.py; `user`/`group` as another uid."""

    workdir: Path
    counter: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, params: MoverParams, *, plan: Plan | None = None, user: int | None = None,
                 group: int | None = None, env: dict[str, str] | None = None) -> MoverRun:
        self.counter += 1
        result_path = self.workdir / f"result-{self.counter}.json"
        if result_path.exists():
            result_path.unlink()
        full_env = dict(os.environ)
        full_env.update(self.env)
        full_env.update(env or {})
        full_env[PARAMS_ENV] = params.model_dump_json(by_alias=True)
        full_env[RESULT_PATH_ENV] = str(result_path)
        argv = [MOVER, params.step]
        if plan is not None:
            plan_path = self.workdir / f"plan-{self.counter}.json"
            plan_path.write_text(plan.to_json())
            plan_path.chmod(0o644)
            full_env[PLAN_ENV] = str(plan_path)
            argv = [sys.executable, str(WRAPPER), params.step]
        if user is not None:
            argv = as_user(argv, user, user if group is None else group)
        proc = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=300, check=False)
        text = result_path.read_text() if result_path.exists() else ""
        assert text, f"the mover wrote no result (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
        fired = bool(plan and plan.fired and plan.fired.exists())
        return MoverRun(returncode=proc.returncode, result=json.loads(text), result_text=text,
                        stdout=proc.stdout, stderr=proc.stderr, fired=fired)


def as_user(argv: list[str], uid: int, gid: int) -> list[str]:
    """argv run as uid:gid with no supplementary groups and no capabilities.

    The interpreter lives under /root (0700 here), which another uid cannot
    traverse: bubblewrap gives the process a view of the host in which /root
    holds only the Python installation, then setpriv drops to uid:gid (a
    uid other than 0 has no capabilities).
    """
    python = Path(os.path.realpath(sys.executable))
    view: list[str] = []
    if python.parts[:2] == ("/", "root"):
        home = str(Path(*python.parts[:3]))  # e.g. /root/.pyenv
        view = ["--tmpfs", "/root", "--ro-bind", home, home]
    return ["bwrap", "--bind", "/", "/", "--dev-bind", "/dev", "/dev", *view, "--",
            "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> dict[str, bytes]:
    """relpath -> bytes of every regular file under root (no link followed, names as str)."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    out[os.path.relpath(path, root)] = handle.read()
    return out


def data_files(root: Path, *, cache: str = CACHE) -> dict[str, bytes]:
    """files_under without the run's own cache dir."""
    return {p: d for p, d in files_under(root).items() if p != cache and not p.startswith(cache + "/")}


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Everything under root: relpath -> (kind, mode, bytes or link target); for 'untouched' checks."""
    out: dict[str, tuple[str, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", info.st_mode, os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                out[rel] = ("file", info.st_mode, Path(path).read_bytes())
            else:
                out[rel] = ("dir" if stat.S_ISDIR(info.st_mode) else "other", info.st_mode, "")
    return out


def contains_bytes(root: Path, needle: bytes) -> list[str]:
    """Regular files under root whose content contains `needle` (an outside file's marker bytes)."""
    return [p for p, data in files_under(root).items() if needle in data]


def remote_dir(nas: Nas, run: Run) -> Path:
    return nas.root / "nas" / run.run_path


def push_and_verify(mover: Mover, nas: Nas, run: Run, *, user: int | None = None, **extra: Any) -> str:
    """Push and verify the run (as `user`); the manifest digest recorded at push."""
    pushed = mover(params_for(nas, run, "push", **extra), user=user)
    assert pushed.returncode == 0, pushed.explain()
    digest = str(pushed.result["manifest"]["sha256"])
    verified = mover(params_for(nas, run, "verify", expectedManifestSha256=digest, **extra), user=user)
    assert verified.returncode == 0 and not verified.result["verify"]["localChanged"], verified.explain()
    return digest


def manifest_of(nas: Nas, run: Run) -> dict[str, str]:
    """The NAS's checksums.sha256 for the run, parsed (relpath -> digest)."""
    from nassync.mover.manifest import parse

    return parse((remote_dir(nas, run) / CACHE / "checksums.sha256").read_bytes())


def assert_deleted_only_what_the_nas_holds(before: dict[str, bytes], run: Run, nas: Nas) -> list[str]:
    """Every file gone from the run is on the NAS with the NAS manifest's SHA-256; returns the gone ones."""
    after = data_files(run.dir)
    remote = data_files(remote_dir(nas, run))
    manifest = manifest_of(nas, run)
    gone = sorted(set(before) - set(after))
    for relpath in gone:
        digest = sha256(before[relpath])
        assert manifest.get(relpath) == digest, f"{relpath} was deleted but the NAS manifest does not prove it"
        assert relpath in remote and sha256(remote[relpath]) == digest, f"{relpath} deleted, not on the NAS"
    return gone


def readable_destination(nas: Nas, directory: Path, uid: int, gid: int) -> Any:
    """The NAS's destination with its secret files copied for `uid` (0600, as a Secret mounted for it)."""
    from nassync.api.mover_io import RcloneDestination, RsyncDestination

    if isinstance(nas, VolumeNas):
        return nas.destination(path="/nas")  # no secret: the mounted volume itself
    secrets = directory / f"secret-{uid}"
    secrets.mkdir(mode=0o700, exist_ok=True)
    os.chown(secrets, uid, gid)

    def place(name: str, data: bytes) -> Path:
        path = secrets / name
        path.write_bytes(data)
        os.chown(path, uid, gid)
        path.chmod(0o600)
        return path

    key = place("ssh-privatekey", nas.client_key.private_path.read_bytes())
    known = place("known_hosts", nas.known_hosts.read_bytes())
    destination = nas.destination(path="/nas")
    if isinstance(destination, RsyncDestination):
        return destination.model_copy(update={"key_file": str(key), "known_hosts_file": str(known)})
    assert isinstance(destination, RcloneDestination)
    text = Path(destination.config_file).read_text()
    text = text.replace(str(nas.client_key.private_path), str(key)).replace(str(nas.known_hosts), str(known))
    return destination.model_copy(update={"config_file": str(place("rclone.conf", text.encode()))})


def write_local_manifest(run: Run) -> str:
    """Write the run's manifest as push would (no NAS involved); its digest, for verify and cleanup params."""
    from nassync.mover.manifest import build_manifest, write_manifest

    manifest = build_manifest(run.dir, cache_dir_name=CACHE)
    write_manifest(run.dir, cache_dir_name=CACHE, manifest=manifest)
    return manifest.digest()
