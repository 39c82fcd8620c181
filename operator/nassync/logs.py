"""Operator logs as JSON lines, with the SyncJob (namespace/name) when a line is about one.

Log aggregators index fields, not prose; `syncjob` lets an admin pull every
line about one run. kopf's per-object loggers attach `k8s_ref`, which is turned
into the same field.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_PLAIN = (str, int, float, bool, list, dict, type(None))
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and ref.get("name"):
            out["syncjob" if ref.get("kind") == "SyncJob" else "object"] = (
                f"{ref.get('namespace', '')}/{ref['name']}")
        for key, value in vars(record).items():
            # Only plain values: kopf attaches whole objects (its settings) to records.
            if (key not in _STANDARD and not key.startswith("k8s_") and key not in out
                    and key != "settings" and isinstance(value, _PLAIN)):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(*, fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kopf's own debug chatter is noise at INFO; keep its warnings.
    logging.getLogger("kopf").setLevel(max(logging.INFO, root.level))
    # Our watch handlers only wake the reconciler; a line per event is noise.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, root.level))
