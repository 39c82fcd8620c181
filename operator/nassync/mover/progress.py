"""Progress as JSON lines on stdout, for the operator (pod logs) and humans.

A push of a large run takes hours; the operator shows bytes, percent, rate and
ETA in `status.transfer.progress`. Transfer tools report in their own formats
(rclone JSON stats, rsync `--info=progress2`); the transports turn those into
`TransferProgress`, and this module emits one stable shape, at most about once
per second (the tools may print many lines a second, and every line is kept in
the pod log), plus always the final sample so the last line is the truth.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from nassync.transports.base import TransferProgress

MIN_INTERVAL_S = 1.0


@dataclass
class ProgressReporter:
    """Throttled writer of `{"event": "progress", ...}` lines (mutable: it remembers the last)."""

    step: str
    total_bytes: int | None = None  # used when the tool does not know the total
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    min_interval: float = MIN_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    _last_emit: float | None = None
    _pending: bool = False
    last: TransferProgress | None = None
    lines: int = 0
    # Bytes done by earlier runs of a restarted tool (rsync at a window change),
    # whose own counter starts again from zero.
    offset: int = 0

    def update(self, sample: TransferProgress) -> bool:
        """Record a sample; emit it if a second has passed. Returns True if emitted."""
        if self.offset:
            sample = dataclasses.replace(sample, bytes=sample.bytes + self.offset)
        self.last = sample
        now = self.clock()
        if self._last_emit is not None and now - self._last_emit < self.min_interval:
            self._pending = True
            return False
        self._emit(sample)
        self._last_emit = now
        return True

    def finish(self) -> None:
        """Emit the last sample if it was throttled away, so the final line is the truth."""
        if self.last is not None and self._pending:
            self._emit(self.last)
            self._last_emit = self.clock()

    def record(self, sample: TransferProgress) -> dict[str, object]:
        total = sample.total_bytes or self.total_bytes
        rate = sample.bytes_per_second
        eta = sample.eta_seconds
        if eta is None and total and rate:
            eta = max(0.0, (total - sample.bytes) / rate)
        record: dict[str, object] = {
            "event": "progress",
            "step": self.step,
            "bytes": sample.bytes,
            "totalBytes": total,
            "percent": round(100.0 * sample.bytes / total, 1) if total else None,
            "bytesPerSecond": round(rate) if rate is not None else None,
            "etaSeconds": round(eta) if eta is not None else None,
        }
        if sample.files is not None:
            record["files"] = sample.files
        return record

    def _emit(self, sample: TransferProgress) -> None:
        self.stream.write(json.dumps(self.record(sample), separators=(",", ":")) + "\n")
        self.stream.flush()
        self.lines += 1
        self._pending = False
