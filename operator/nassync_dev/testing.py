"""Helpers for tests and the demo that drive a cluster the way a user does: kubectl.

Tests wait for conditions (with a deadline and a message saying what never
happened) instead of sleeping, and talk to the cluster through the real kubectl
of the pinned release so that what they assert is what a lab admin would see.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nassync_dev import binaries

T = TypeVar("T")


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({result.returncode}): "
                         f"{result.stderr.strip() or result.stdout.strip()}")
        self.result = result
        self.stderr = result.stderr


def eventually(probe: Callable[[], T | None], *, timeout: float = 60, interval: float = 0.25,
               what: str = "condition") -> T:
    """Return probe()'s first truthy value; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except AssertionError:
            raise  # the probe saw a state that can never become the wanted one
        except Exception as e:  # the last error explains a timeout
            last_error = e
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass
class Kubectl:
    kubeconfig: Path
    namespace: str | None = None

    def env(self) -> dict[str, str]:
        bins = binaries.locate()
        path = os.pathsep.join([str(d) for d in bins.path_dirs] + [os.environ.get("PATH", "")])
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def run(self, *args: str, input: str | None = None, check: bool = True,
            namespaced: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [str(binaries.locate().kubectl)]
        if namespaced and self.namespace:
            argv += ["-n", self.namespace]
        argv += list(args)
        result = subprocess.run(argv, input=input, capture_output=True, text=True,
                                env=self.env(), timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(list(args), result)
        return result

    def __call__(self, *args: str, **kw: Any) -> str:
        return self.run(*args, **kw).stdout

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]]) -> str:
        if not isinstance(manifest, str):
            items = manifest if isinstance(manifest, list) else [manifest]
            manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self("apply", "-f", "-", input=manifest)

    def get(self, kind: str, name: str | None = None, **kw: Any) -> Any:
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        return json.loads(self(*args, **kw))

    def exists(self, kind: str, name: str) -> bool:
        return self.run("get", kind, name, check=False).returncode == 0

    def in_namespace(self, namespace: str) -> Kubectl:
        return Kubectl(self.kubeconfig, namespace)
