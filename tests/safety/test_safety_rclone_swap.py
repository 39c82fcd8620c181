"""Issue #9, item 9, the part that is not closed: rclone follows a directory of the run swapped mid-copy.

The mover hands rclone the opened run (/proc/self/fd/N), but below it rclone
lists directories and opens files by path, following symlinks on the way
(rsync opens each component with O_NOFOLLOW). A directory swapped for a
symlink after rclone listed its parent and before it descends is therefore
followed, and what the link points to is copied to the NAS. The push then
fails (LocalVanished) and such a copy never verifies, but the bytes are on
the NAS. docs/concepts.md ("What it assumes") says so; this test reproduces
it exactly, and is expected to fail until the copy tool can be kept inside
the run (e.g. a Landlock-restricted rclone, or per-directory copies from
descriptors). Strict: the day it passes, the limitation is gone and the
docs must change.

The interleaving is made exact with a WebDAV NAS (real `rclone serve webdav`)
behind a proxy that holds the copy's listing of the remote run directory:
rclone's march lists source and destination of a directory together and only
descends when both are done. The mutating mover watches the run directory
with inotify; when rclone has read it (closed it), the subdirectory is
swapped and the proxy lets the listing answer.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from safetylib import Mover, Plan, RunFactory, contains_bytes, op_rename, op_symlink, params_for

from nassync.api.mover_io import RcloneDestination
from nassync_dev.nas import _Server
from nassync_dev.nas import find_rclone as _find_rclone

pytestmark = pytest.mark.nas


class _WebDav(_Server):
    _ready_marker = "WebDav Server started"

    def _argv(self) -> list[str]:
        return [_find_rclone(), "serve", "webdav", str(self.root), "--addr", f"127.0.0.1:{self.port}",
                "--config", "/dev/null", "--dir-cache-time", "1s", "--log-level", "INFO"]


@dataclass
class _Proxy:
    """Forwards HTTP to the WebDAV server; when armed, holds the first depth-1 PROPFIND of `hold_path`."""

    backend_port: int
    hold_path: str
    armed: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)


def _handler(proxy: _Proxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if self.path == "/__arm":
                proxy.armed.set()
                return self._reply(200, b"armed")
            if self.path == "/__release":
                proxy.release.set()
                return self._reply(200, b"released")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if (proxy.armed.is_set() and not proxy.held.is_set() and self.command == "PROPFIND"
                    and self.headers.get("Depth") == "1" and self.path.rstrip("/") == proxy.hold_path):
                proxy.held.set()
                assert proxy.release.wait(120), "the mutating mover never released the listing"
            conn = http.client.HTTPConnection("127.0.0.1", proxy.backend_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in {"connection", "transfer-encoding", "content-length"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        def _reply(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_PROPFIND = do_MKCOL = do_DELETE = do_MOVE = do_COPY = do_HEAD = do_POST = _forward

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def webdav(tmp_path: Path) -> Iterator[_WebDav]:
    with _WebDav(workdir=tmp_path / "webdav") as server:
        yield server


def test_a_directory_swapped_while_rclone_copies_never_brings_outside_bytes_to_the_nas(
        webdav: _WebDav, make_run: RunFactory, mover: Mover, outside: Path, tmp_path: Path) -> None:
    run = make_run({"a.bin": b"a", "zzz/a.bin": b"run data"})
    proxy = _Proxy(backend_port=webdav.port, hold_path=f"/nas/{run.run_path}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        config = tmp_path / "rclone.conf"
        config.write_text(f"[dav]\ntype = webdav\nurl = http://127.0.0.1:{port}/\nvendor = other\n")
        destination = RcloneDestination(remote="dav", path="/nas", configFile=str(config))
        swap = [op_rename(run.dir / "zzz", run.dir / "zzz.moved"), op_symlink(outside / "data", run.dir / "zzz")]
        plan = Plan(when="copy-start", fired=tmp_path / "fired", ops=[
            ["after-listing", str(run.dir), f"http://127.0.0.1:{port}/__arm", f"http://127.0.0.1:{port}/__release",
             swap]])
        pushed = mover(params_for(None, run, "push", destination=destination), plan=plan)  # type: ignore[arg-type]
        assert pushed.fired and proxy.held.is_set(), pushed.explain()
        assert pushed.returncode == 1 and pushed.kind == "LocalVanished", pushed.explain()
        leaked = contains_bytes(webdav.root, b"OUTSIDE-SECRET-BYTES")
        assert not leaked, f"outside bytes reached the NAS: {leaked}"
    finally:
        server.shutdown()
        server.server_close()
