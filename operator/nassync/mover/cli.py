"""`nassync-mover gate|push|verify|cleanup`: the entry point of every mover pod.

The command line holds only the step; everything else arrives as JSON in
`NASSYNC_PARAMS` (or `--params-file`, for tests and by hand), so nothing a
user controls is ever parsed as an option and no secret is ever on argv.

Whatever happens, the pod answers with one `MoverResult` (<= 4 KiB) in its
termination message (`NASSYNC_RESULT_PATH` overrides /dev/termination-log) and
as the last stdout line, and the exit code says whether the step did its job:
0 for success and for gate outcomes ("blocked", "not quiet yet"), 1 for a
failure whose `error.kind` drives the operator's retry policy, 2 for
parameters that do not parse. An unexpected exception is a failure of kind
Unknown, with a scrubbed message, never a traceback full of paths and env.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast, get_args

from pydantic import ValidationError

from nassync.api.mover_io import (
    DEFAULT_RESULT_PATH,
    PARAMS_ENV,
    RESULT_PATH_ENV,
    ErrorInfo,
    ErrorKind,
    MoverParams,
    MoverResult,
    Step,
)
from nassync.mover.identity import passwd_env
from nassync.mover.logs import MoverLog
from nassync.mover.outcome import StepFailed
from nassync.mover.steps.cleanup import cleanup
from nassync.mover.steps.gate import gate
from nassync.mover.steps.push import push
from nassync.mover.steps.verify import verify
from nassync.transports.classify import scrub

StepFn = Callable[[MoverParams], MoverResult]
EXIT_OK, EXIT_FAILED, EXIT_BAD_PARAMS = 0, 1, 2


STEPS: dict[str, Callable[..., MoverResult]] = {
    "gate": gate,
    "push": push,
    "verify": verify,
    "cleanup": cleanup,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nassync-mover", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=list(get_args(Step)))
    parser.add_argument("--params-file", type=Path, help=f"read MoverParams JSON from a file instead of ${PARAMS_ENV}")
    return parser


def load_params(params_file: Path | None) -> MoverParams:
    text = params_file.read_text() if params_file else os.environ.get(PARAMS_ENV, "")
    if not text.strip():
        raise ValueError(f"no parameters: set {PARAMS_ENV} or pass --params-file")
    return MoverParams.model_validate_json(text)


def write_result(result: MoverResult) -> None:
    text = result.dump()
    path = Path(os.environ.get(RESULT_PATH_ENV) or DEFAULT_RESULT_PATH)
    try:
        path.write_text(text)
    except OSError as exc:
        print(json.dumps({"event": "warning", "msg": f"cannot write result to {path}: {exc}"}), file=sys.stderr)
    sys.stdout.write(json.dumps({"event": "result", "result": json.loads(text)}) + "\n")
    sys.stdout.flush()


def _failure(step: Step, info: ErrorInfo, partial: dict[str, Any] | None = None) -> MoverResult:
    fields = {k: v for k, v in (partial or {}).items() if v is not None}
    return MoverResult(step=step, ok=False, error=info, **fields)


def run_step(step: Step, params: MoverParams, log: MoverLog) -> MoverResult:
    now = datetime.now(UTC)
    try:
        return STEPS[step](params, log=log, now=now)
    except StepFailed as exc:
        return _failure(step, exc.info, exc.partial)
    except Exception as exc:  # the pod must always answer; never a raw traceback
        log.error("unexpected error", error=type(exc).__name__, detail=str(exc))
        message = scrub(f"unexpected {type(exc).__name__} in {step}: {exc}")[:1000]
        return _failure(step, ErrorInfo(kind=ErrorKind.UNKNOWN, message=message))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    step = cast(Step, args.step)
    try:
        params = load_params(args.params_file)
    except (OSError, ValueError, ValidationError) as exc:
        detail = scrub(str(exc))[:1000]
        write_result(_failure(step, ErrorInfo(kind=ErrorKind.CONFIG, message=f"bad parameters: {detail}")))
        return EXIT_BAD_PARAMS
    log = MoverLog(owner=params.owner, step=step)
    if params.step != step:
        info = ErrorInfo(
            kind=ErrorKind.CONFIG,
            message=f"asked to run step {step} with parameters for step {params.step}",
        )
        write_result(_failure(step, info))
        return EXIT_BAD_PARAMS
    log.info("step started", runPath=params.run_path)
    # The tools the step starts (ssh) need a passwd entry for our uid.
    os.environ.update(passwd_env())
    result = run_step(step, params, log)
    if result.error is not None:
        log.error("step failed", kind=result.error.kind.value, detail=result.error.message)
    else:
        log.info("step finished")
    write_result(result)
    return EXIT_OK if result.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
