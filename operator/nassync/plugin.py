"""`kubectl nassync`: the day-to-day SyncJob commands of a lab admin, as a kubectl plugin.

kubectl runs any executable on PATH named `kubectl-<name>` as `kubectl <name>`;
this is the `kubectl-nassync` console script. Each command is a thin wrapper
over what an admin could type by hand, so nothing here is magic and the docs'
raw kubectl commands keep working:

    kubectl nassync status [-n NS | -A]      one table: phase, progress, size, verify passes, last error
    kubectl nassync retry NAME               annotate nassync.dev/retry=<now>  (re-arms Failed / Blocked)
    kubectl nassync verify NAME              annotate nassync.dev/verify=<now> (a verify pass now, in Verified)
    kubectl nassync hold NAME [--release]    merge-patch spec.cleanup.hold true / false
    kubectl nassync suspend NAME / resume NAME   merge-patch spec.suspend true / false

The operator acts on a *changed* annotation value once (status.handledRetry /
handledVerify remember the last one), so each command writes the current time
with microseconds: running it twice asks twice.

Connection settings follow kubectl: `--kubeconfig`, `--context`, `-n/--namespace`
(default: the context's namespace, else `default`) and the KUBECONFIG variable.
The table is rendered by the pure function `format_status`, so its layout is
unit-tested without a cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from nassync.api.common import GROUP, VERSION, dig, parse_time
from nassync.api.syncjob import NEEDS_PERSON, PLURAL, RETRY_ANNOTATION, VERIFY_ANNOTATION, Phase
from nassync.core.humanize import human_bytes

COLUMNS = ("NAMESPACE", "NAME", "TARGET", "PHASE", "PROGRESS", "SIZE", "VERIFIED", "COPIES", "AGE", "LAST ERROR")
ERROR_WIDTH = 60
MERGE_PATCH = "application/merge-patch+json"
RESOURCE = f"{PLURAL}.{GROUP}"
# Phases in which the operator acts on each request; elsewhere it records the value and ignores it.
RETRY_PHASES = tuple(p.value for p in NEEDS_PERSON)
VERIFY_PHASES = (Phase.VERIFIED.value,)


# --- pure formatting --------------------------------------------------------------


def human_age(seconds: float) -> str:
    """The AGE column as kubectl prints it (k8s.io/apimachinery duration.HumanDuration)."""
    s = int(seconds)
    if s < 0:
        return "0s" if s > -2 else "<invalid>"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 60 * 2:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        years = days // 365
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{days // 365}y"


def _truncate(text: str, width: int) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def status_row(item: Mapping[str, Any], now: datetime) -> tuple[str, ...]:
    """One table row for a SyncJob object (as the API returns it)."""
    meta = item.get("metadata") or {}
    status = item.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    percent = dig(status, "transfer", "progress", "percent")
    progress = f"{int(percent)}%" if phase == "Pushing" and percent is not None else "-"
    size_bytes = dig(status, "manifest", "bytes")
    size = human_bytes(int(size_bytes)) if size_bytes is not None else "-"
    created = meta.get("creationTimestamp")
    age = human_age((now - parse_time(created)).total_seconds()) if created else "<unknown>"
    error = dig(status, "lastError", "message")
    kind = dig(status, "lastError", "kind")
    prefix = ""
    if not (error or kind):
        # The job's own record is clean: the first replica that is failing speaks instead.
        failing = next((d for d in status.get("destinations") or () if d.get("name") != "primary"
                        and d.get("lastError") and d.get("state") != "Verified"), None)
        if failing is not None:
            prefix = f"replica {failing.get('name')}: "
            error, kind = dig(failing, "lastError", "message"), dig(failing, "lastError", "kind")
    text = f"{kind}: {error}" if kind and error else str(error or kind or "")
    last_error = _truncate(prefix + text, ERROR_WIDTH) if text else "-"
    return (
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        str(dig(item, "spec", "targetRef", "name") or ""),
        phase,
        progress,
        size,
        str(int(status.get("verifyPasses") or 0)),
        str(status.get("copies") or "-"),  # "<verified>/<all>"
        age,
        last_error,
    )


def format_status(items: Iterable[Mapping[str, Any]], now: datetime) -> str:
    """The `status` table, columns padded like kubectl's (three spaces apart), sorted by namespace and name.

    Empty when there are no items (the caller says "No resources found").
    """
    rows = sorted((status_row(item, now) for item in items), key=lambda r: (r[0], r[1]))
    if not rows:
        return ""
    table = [COLUMNS, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = []
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def request_value(now: datetime) -> str:
    """A fresh annotation value: RFC 3339 UTC with microseconds, so two requests never collide."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def annotation_patch(annotation: str, value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {annotation: value}}}


def spec_patch(*, suspend: bool | None = None, hold: bool | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if suspend is not None:
        spec["suspend"] = suspend
    if hold is not None:
        spec["cleanup"] = {"hold": hold}
    return {"spec": spec}


# --- the API ------------------------------------------------------------------------


class PluginError(Exception):
    """A failure to report as `error: ...` with exit code 1, like kubectl."""


@dataclass
class Client:
    """The few SyncJob calls the plugin makes, over the kubernetes client's CustomObjectsApi."""

    api: Any  # kubernetes.client.CustomObjectsApi
    namespace: str

    def list(self, *, all_namespaces: bool) -> list[dict[str, Any]]:
        if all_namespaces:
            result = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            result = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return list(result.get("items") or [])

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, body, _content_type=MERGE_PATCH
            )
        )


def connect(*, kubeconfig: str | None, context: str | None, namespace: str | None) -> Client:
    """A client for the kubeconfig kubectl would use, and the namespace it would default to."""
    from kubernetes import client, config

    config_file = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        contexts, current = config.list_kube_config_contexts(config_file=config_file)
        api_client = config.new_client_from_config(config_file=config_file, context=context)
    except (config.ConfigException, OSError) as exc:
        raise PluginError(f"cannot load kubeconfig {config_file}: {exc}") from exc
    if namespace is None:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None) if context else current
        namespace = dig(chosen, "context", "namespace") or "default"
    return Client(api=client.CustomObjectsApi(api_client), namespace=namespace)


def _api_error(exc: ApiException, name: str | None) -> PluginError:
    status = exc.status
    if status == 404 and name:
        return PluginError(f'{RESOURCE} "{name}" not found')
    if status == 404:
        return PluginError(f"the server doesn't have a resource type {RESOURCE} (are the CRDs installed?)")
    return PluginError(f"{exc.reason} ({status}): {exc.body}" if status else f"{exc.reason or exc}")


# --- commands -----------------------------------------------------------------------


def cmd_status(api: Client, args: argparse.Namespace, now: datetime) -> int:
    items = api.list(all_namespaces=args.all_namespaces)
    text = format_status(items, now)
    if not text:
        where = "" if args.all_namespaces else f" in {api.namespace} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    sys.stdout.write(text)
    return 0


def _request(api: Client, name: str, annotation: str, phases: Sequence[str], now: datetime) -> int:
    phase = str(dig(api.get(name), "status", "phase") or "Pending")
    value = request_value(now)
    api.patch(name, annotation_patch(annotation, value))
    print(f"{RESOURCE}/{name} annotated {annotation}={value}")
    if phase not in phases:
        print(
            f"note: {name} is {phase}; the operator acts on {annotation} only in "
            f"{' or '.join(phases)} (this request is recorded and otherwise ignored)",
            file=sys.stderr,
        )
    return 0


def cmd_retry(api: Client, args: argparse.Namespace, now: datetime) -> int:
    return _request(api, args.name, RETRY_ANNOTATION, RETRY_PHASES, now)


def cmd_verify(api: Client, args: argparse.Namespace, now: datetime) -> int:
    return _request(api, args.name, VERIFY_ANNOTATION, VERIFY_PHASES, now)


def cmd_hold(api: Client, args: argparse.Namespace, now: datetime) -> int:
    hold = not args.release
    api.patch(args.name, spec_patch(hold=hold))
    what = "on hold: never deleted locally" if hold else "released: cleanup follows the target's policy"
    print(f"{RESOURCE}/{args.name} patched (spec.cleanup.hold={str(hold).lower()}; {what})")
    return 0


def _suspend(api: Client, name: str, suspend: bool) -> int:
    api.patch(name, spec_patch(suspend=suspend))
    what = "no new mover starts; a running one finishes" if suspend else "resumed"
    print(f"{RESOURCE}/{name} patched (spec.suspend={str(suspend).lower()}; {what})")
    return 0


def cmd_suspend(api: Client, args: argparse.Namespace, now: datetime) -> int:
    return _suspend(api, args.name, True)


def cmd_resume(api: Client, args: argparse.Namespace, now: datetime) -> int:
    return _suspend(api, args.name, False)


Command = Callable[[Client, argparse.Namespace, datetime], int]


def parser() -> argparse.ArgumentParser:
    # Connection flags are accepted before and after the subcommand, as kubectl does.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="path to the kubeconfig file")
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context to use")
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace of the SyncJob(s)")
    top = argparse.ArgumentParser(
        prog="kubectl nassync", parents=[common], description="Inspect and steer nassync SyncJobs."
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser("status", parents=[common], help="table of SyncJobs")
    status.add_argument("-A", "--all-namespaces", action="store_true", help="list SyncJobs in every namespace")
    status.set_defaults(func=cmd_status)
    for name, func, text in (
        ("retry", cmd_retry, f"re-arm a Failed or Blocked SyncJob ({RETRY_ANNOTATION}=<now>)"),
        ("verify", cmd_verify, f"run a verify pass of a Verified SyncJob now ({VERIFY_ANNOTATION}=<now>)"),
        ("hold", cmd_hold, "never delete this run locally (spec.cleanup.hold=true)"),
        ("suspend", cmd_suspend, "start no further step (spec.suspend=true)"),
        ("resume", cmd_resume, "undo suspend (spec.suspend=false)"),
    ):
        command = sub.add_parser(name, parents=[common], help=text, description=text)
        command.add_argument("name", metavar="NAME", help="the SyncJob")
        command.set_defaults(func=func)
        if name == "hold":
            command.add_argument("--release", action="store_true", help="release the hold (spec.cleanup.hold=false)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    func: Command = args.func
    try:
        api = connect(
            kubeconfig=getattr(args, "kubeconfig", None),
            context=getattr(args, "context", None),
            namespace=getattr(args, "namespace", None),
        )
        try:
            return func(api, args, datetime.now(UTC))
        except ApiException as exc:
            raise _api_error(exc, getattr(args, "name", None)) from exc
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
