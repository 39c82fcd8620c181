"""The mover's log: JSON lines on stderr, each naming the SyncJob it works for.

Many mover pods run on one node and their logs end up in one aggregator, so
every line carries `owner` (`<namespace>/<name>/<uid>`) and `step`. Every
string goes through `classify.scrub` on the way out: a log line is copied to
places (log shippers, support tickets) where a secret must never land.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from nassync.transports.classify import scrub


def _clean(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class MoverLog:
    owner: str
    step: str
    stream: TextIO = field(default_factory=lambda: sys.stderr)

    def _write(self, level: str, msg: str, fields: dict[str, object]) -> None:
        record: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "owner": self.owner,
            "step": self.step,
            "msg": scrub(msg),
        }
        record.update({k: _clean(v) for k, v in fields.items() if k not in record})
        self.stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.stream.flush()

    def info(self, msg: str, **fields: object) -> None:
        self._write("info", msg, fields)

    def warning(self, msg: str, **fields: object) -> None:
        self._write("warning", msg, fields)

    def error(self, msg: str, **fields: object) -> None:
        self._write("error", msg, fields)
