"""How a mover step fails: one exception carrying a classified, scrubbed error.

Steps raise `StepFailed` with an `ErrorInfo` (kind + lab-admin message) and
whatever partial result is already known (e.g. the manifest summary of a push
whose copy then failed), and the CLI turns it into the `MoverResult`. Keeping
this out of the step modules lets push, verify and cleanup share it.
"""

from __future__ import annotations

from typing import Any

from nassync.api.mover_io import ErrorInfo, ErrorKind
from nassync.transports.classify import scrub


class StepFailed(Exception):
    def __init__(self, info: ErrorInfo, **partial: Any) -> None:
        super().__init__(info.message)
        self.info = info
        self.partial = partial  # MoverResult fields (by python name) known at failure


def fail(kind: ErrorKind, message: str, **partial: Any) -> StepFailed:
    """Build a StepFailed with a scrubbed message (raise the return value)."""
    return StepFailed(ErrorInfo(kind=kind, message=scrub(message)), **partial)


def examples(paths: list[str] | tuple[str, ...], *, limit: int = 5) -> list[str]:
    """A few relpaths for messages; the count is reported separately."""
    return [p for p in list(paths)[:limit]]
