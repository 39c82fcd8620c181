"""`make image`: the repository's Dockerfile built without a Docker engine or a registry.

buildah (Debian) builds the Dockerfile unchanged, with vfs storage and chroot
isolation. No registry is reachable on development and CI machines, so the
base image (`python:<tag>-slim` with a registry) is made here: mmdebstrap
bootstraps Debian bookworm with its Python 3.11 into a tarball, buildah turns
that into `localhost/nassync-base:<hash>`, and the build gets it through the
Dockerfile's `PYTHON_IMAGE` build argument. The result is an OCI archive under
`~/.cache/nassync/image/` named after a hash of the build inputs (Dockerfile,
.dockerignore, pyproject.toml, every file of the build context, the base
recipe), so an unchanged tree reuses it and any change rebuilds it.

The pod sandbox image of the kubelet node ("pause") is built here too: a
static binary from tools/pause/pause.c in an image of its own.

Build environment only, never in the image: when the host trusts extra CAs
(an egress proxy) its CA bundle and /etc/pip.conf are bind-mounted into the
build's RUN steps so pip and apt reach their registries as they do on the host.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nassync_dev.binaries import REPO, cache_dir

IMAGE_REPO = "localhost/nassync/nassync"
PAUSE_REPO = "localhost/nassync/pause"
BASE_REPO = "localhost/nassync-base"
BASE_SUITE = "bookworm"
# What python:3.11-slim-bookworm offers the Dockerfile: `python` with venv and
# pip (ensurepip), CA certificates, apt.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# Like the official slim images: no docs, man pages or locales in the base.
BASE_DPKG_OPTS = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
                  "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
                  "path-exclude=/usr/share/info/*")
PAUSE_SOURCE = REPO / "tools" / "pause" / "pause.c"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_PIP_CONF = Path("/etc/pip.conf")


@dataclass(frozen=True)
class BuiltImage:
    name: str
    archive: str
    digest: str
    size: int
    build_seconds: float
    cached: bool = False

    def summary(self) -> str:
        how = "cached" if self.cached else f"built in {self.build_seconds:.0f}s"
        return (f"{self.name}  {self.size / 1e6:.1f} MB (OCI archive {self.archive})  "
                f"digest {self.digest}  {how}")


def image_dir() -> Path:
    return cache_dir() / "image"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _sha(h: Any, label: str, data: bytes) -> None:
    h.update(f"{label}\0{len(data)}\0".encode())
    h.update(data)


def _ignored_by(pattern: str, rel: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories; `**/` matches any depth."""
    parts = rel.split("/")
    if pattern.startswith("**/"):
        core = pattern[3:]
        return any(fnmatch.fnmatchcase("/".join(parts[j:i]), core) for i in range(1, len(parts) + 1) for j in range(i))
    return any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def _walk(repo: Path) -> list[Path]:
    """Files under `repo`, skipping .git, the venv and caches (never sent, and large)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(repo):
        if Path(dirpath) == repo:
            dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", ".cache")]
        found += [Path(dirpath) / f for f in filenames if (Path(dirpath) / f).is_file()]
    return sorted(found)


def context_files(repo: Path = REPO) -> list[Path]:
    """Files `docker build .` sends, per .dockerignore (last matching pattern wins, `!` re-includes)."""
    patterns = [
        p.strip() for p in (repo / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    files = []
    for path in _walk(repo):
        rel = path.relative_to(repo).as_posix()
        included = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            if _ignored_by(pattern.lstrip("!").rstrip("/"), rel):
                included = negate
        if included:
            files.append(path)
    return files


def base_recipe() -> str:
    return json.dumps({"suite": BASE_SUITE, "packages": BASE_PACKAGES, "dpkg": BASE_DPKG_OPTS,
                       "variant": "minbase"}, sort_keys=True)


def inputs_hash() -> str:
    """Hash of everything the image is made from; a change anywhere means a rebuild."""
    h = hashlib.sha256()
    _sha(h, "base", base_recipe().encode())
    for name in ("Dockerfile", ".dockerignore"):
        _sha(h, name, (REPO / name).read_bytes())
    for path in context_files(REPO):
        _sha(h, path.relative_to(REPO).as_posix(), path.read_bytes())
    return h.hexdigest()[:16]


def _run(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({result.returncode}):\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


class Buildah:
    """buildah with a private vfs store (removed afterwards): no daemon, no overlay mounts."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.base = ["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"),
                     "--storage-driver", "vfs"]

    def __call__(self, *args: str, timeout: float = 1800) -> str:
        return _run([*self.base, *args], timeout=timeout).stdout.strip()

    def image_from_rootfs(self, tarball: Path, name: str, *, config: list[str]) -> None:
        ctr = self("from", "scratch")
        try:
            self("add", ctr, str(tarball), "/")
            if config:
                self("config", *config, ctr)
            self("commit", "-q", ctr, name)
        finally:
            self("rm", ctr)

    def push_oci_archive(self, name: str, archive: Path) -> str:
        digest_file = self.store / "digest"
        tmp = archive.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        self("push", "-q", "--digestfile", str(digest_file), name, f"oci-archive:{tmp}:{name}")
        tmp.rename(archive)
        return digest_file.read_text().strip()


@contextlib.contextmanager
def _buildah() -> Iterator[Buildah]:
    image_dir().mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="buildah-", dir=image_dir()))
    try:
        yield Buildah(store)
    finally:
        # vfs layers are plain directories; buildah removes its own containers (`--rm`).
        subprocess.run(["buildah", "--root", str(store / "root"), "--runroot", str(store / "run"),
                        "--storage-driver", "vfs", "rm", "--all"], capture_output=True, check=False)
        shutil.rmtree(store, ignore_errors=True)


def ensure_base_tarball() -> Path:
    """Debian bookworm + Python 3.11 as a root filesystem tarball (mmdebstrap, cached)."""
    digest = hashlib.sha256(base_recipe().encode()).hexdigest()[:16]
    out = image_dir() / f"base-{digest}.tar"
    if out.exists():
        return out
    image_dir().mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    _log(f">> mmdebstrap {BASE_SUITE} ({', '.join(BASE_PACKAGES)}) -> {out}")
    argv = ["mmdebstrap", "--quiet", "--format=tar", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            *(f"--dpkgopt={o}" for o in BASE_DPKG_OPTS), "--aptopt=APT::Install-Recommends \"false\"",
            BASE_SUITE, str(tmp)]
    _run(argv, timeout=1800)
    tmp.rename(out)
    return out


def _git_revision() -> str:
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def _meta(path: Path) -> BuiltImage | None:
    try:
        meta = BuiltImage(**{**json.loads(path.read_text()), "cached": True})
    except (OSError, ValueError, TypeError):
        return None
    return meta if Path(meta.archive).exists() else None


def _prune(prefix: str, keep: Path) -> None:
    for old in image_dir().glob(f"{prefix}-*"):
        if old.name.split(".")[0] != keep.name.split(".")[0]:
            old.unlink(missing_ok=True)


def ensure_image(*, force: bool = False) -> BuiltImage:
    """The nassync image as an OCI archive, built when the inputs changed (or `force`)."""
    tag = inputs_hash()
    meta_path = image_dir() / f"nassync-{tag}.json"
    if not force and (found := _meta(meta_path)):
        return found
    name = f"{IMAGE_REPO}:{tag}"
    archive = image_dir() / f"nassync-{tag}.tar"
    started = time.monotonic()
    base_tar = ensure_base_tarball()
    base_name = f"{BASE_REPO}:{base_tar.stem.removeprefix('base-')}"
    with _buildah() as buildah:
        _log(f">> base image {base_name} from {base_tar.name}")
        buildah.image_from_rootfs(base_tar, base_name, config=[
            "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--env", "LANG=C.UTF-8", "--cmd", "python3"])
        volumes: list[str] = []
        if HOST_CA_BUNDLE.exists():
            volumes += ["--volume", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro"]
        if HOST_PIP_CONF.exists():
            volumes += ["--volume", f"{HOST_PIP_CONF}:/etc/pip.conf:ro"]
        _log(f">> buildah build {name} (Dockerfile, PYTHON_IMAGE={base_name})")
        buildah("build", "--isolation", "chroot", "--pull=never", "--layers=false", "--quiet",
                "--build-arg", f"PYTHON_IMAGE={base_name}",
                "--build-arg", f"REVISION={_git_revision()}",
                "--build-arg", f"CREATED={dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
                *volumes, "--tag", name, "--file", str(REPO / "Dockerfile"), str(REPO))
        digest = buildah.push_oci_archive(name, archive)
    built = BuiltImage(name=name, archive=str(archive), digest=digest, size=archive.stat().st_size,
                       build_seconds=round(time.monotonic() - started, 1))
    meta_path.write_text(json.dumps(asdict(built), indent=2))
    _prune("nassync", archive)
    return built


def pause_hash() -> str:
    return hashlib.sha256(PAUSE_SOURCE.read_bytes()).hexdigest()[:16]


def ensure_pause() -> BuiltImage:
    """The pod sandbox image: a static pause binary, nothing else (uid 65535)."""
    tag = pause_hash()
    meta_path = image_dir() / f"pause-{tag}.json"
    if found := _meta(meta_path):
        return found
    started = time.monotonic()
    name = f"{PAUSE_REPO}:{tag}"
    archive = image_dir() / f"pause-{tag}.tar"
    with _buildah() as buildah:
        rootfs = buildah.store / "rootfs"
        rootfs.mkdir()
        _run(["gcc", "-Os", "-static", "-o", str(rootfs / "pause"), str(PAUSE_SOURCE)], timeout=120)
        _run(["strip", str(rootfs / "pause")], timeout=60)
        tarball = buildah.store / "pause.tar"
        _run(["tar", "-C", str(rootfs), "--owner=0", "--group=0", "-cf", str(tarball), "pause"], timeout=60)
        buildah.image_from_rootfs(tarball, name, config=[
            "--entrypoint", '["/pause"]', "--user", "65535:65535"])
        digest = buildah.push_oci_archive(name, archive)
    built = BuiltImage(name=name, archive=str(archive), digest=digest, size=archive.stat().st_size,
                       build_seconds=round(time.monotonic() - started, 1))
    meta_path.write_text(json.dumps(asdict(built), indent=2))
    _prune("pause", archive)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nassync_dev.image", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    parser.add_argument("--print-name", action="store_true", help="print only the image name")
    args = parser.parse_args(argv)
    built = ensure_image(force=args.force)
    if args.print_name:
        print(built.name)
    else:
        print(built.summary())
        print(ensure_pause().summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
