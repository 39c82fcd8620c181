"""Generate docs/reference.md, the field-by-field CRD reference, from crds/*.yaml.

The CRDs are the source of truth for the API (the apiserver enforces and
prunes by them), so the reference is generated from them rather than written
by hand: every field of SyncTarget and SyncJob, spec and status, with its type,
default, validation (enum, pattern, length/item/value bounds, format, CEL rule
messages) and description. Each object level gets its own table, so a reader
follows `spec.destination` → `spec.destination.rsync` the way they nest in YAML.

    python -m nassync_dev.crdref          # (re)write docs/reference.md
    python -m nassync_dev.crdref --check  # exit 1 when docs/reference.md is stale

tests/unit/test_docs_current.py runs the check, so a CRD change without a
regenerated reference fails the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nassync_dev.binaries import REPO

CRD_DIR = REPO / "crds"
OUTPUT = REPO / "docs" / "reference.md"
REGENERATE = ".venv/bin/python -m nassync_dev.crdref"
# Kinds in reading order: the admin's object first, the one that names it second.
KIND_ORDER = ("SyncTarget", "SyncJob")


@dataclass(frozen=True)
class Section:
    """One object level: its dotted path, the schema of the object, and whether it is a list item."""

    path: str
    schema: dict[str, Any]


def load_crds(crd_dir: Path = CRD_DIR) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in `crd_dir`, in KIND_ORDER (others after, by kind)."""
    crds = []
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)

    def order(crd: dict[str, Any]) -> tuple[int, str]:
        kind = str(crd["spec"]["names"]["kind"])
        return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind)

    return sorted(crds, key=order)


def _one_line(text: str) -> str:
    """One line, pipes escaped: safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _cell(text: str) -> str:
    """Prose for a table cell; `<path>` must not be read as an HTML tag."""
    return _one_line(text).replace("<", "&lt;").replace(">", "&gt;")


def _code(value: str) -> str:
    # Backticks inside a code span need a longer fence; none of our values has one.
    return f"`{_one_line(value)}`"


def _literal(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def _is_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object" and "properties" in schema


def type_of(schema: dict[str, Any]) -> str:
    """A short Go-like type: `string`, `integer (int64)`, `[]string`, `map[string]string`, `object`."""
    if schema.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return "[]" + type_of(schema.get("items") or {})
    if kind == "object" and "additionalProperties" in schema and "properties" not in schema:
        extra = schema["additionalProperties"]
        return "map[string]" + (type_of(extra) if isinstance(extra, dict) else "any")
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else kind


def _bounds(schema: dict[str, Any], low: str, high: str, what: str) -> str | None:
    lo, hi = schema.get(low), schema.get(high)
    if lo is not None and hi is not None:
        return f"{what} {lo} to {hi}"
    if lo is not None:
        return f"{what} ≥ {lo}"
    if hi is not None:
        return f"{what} ≤ {hi}"
    return None


def validation_of(schema: dict[str, Any]) -> list[str]:
    """Every rule the apiserver enforces on this field, in words (CEL rules by their message)."""
    rules: list[str] = []
    if "enum" in schema:
        rules.append("one of " + ", ".join(_code(_literal(v)) for v in schema["enum"]))
    if "pattern" in schema:
        rules.append("pattern " + _code(str(schema["pattern"])))
    for low, high, what in (
        ("minLength", "maxLength", "length"),
        ("minimum", "maximum", "value"),
        ("minItems", "maxItems", "items"),
        ("minProperties", "maxProperties", "entries"),
    ):
        bound = _bounds(schema, low, high, what)
        if bound:
            rules.append(bound)
    if schema.get("format") == "date-time":
        rules.append("RFC 3339 time")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        rules.append("no duplicates")
    elif list_type == "map":
        keys = ", ".join(schema.get("x-kubernetes-list-map-keys") or [])
        rules.append(f"unique by {keys}")
    items = schema.get("items")
    if isinstance(items, dict) and not _is_object(items):
        rules.extend(f"each item: {rule}" for rule in validation_of(items))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        rules.extend(f"each value: {rule}" for rule in validation_of(extra))
    for cel in schema.get("x-kubernetes-validations") or []:
        message = cel.get("message") or f"CEL rule {cel.get('rule', '')}"
        rules.append(f"CEL: “{_cell(str(message))}”")
    return rules


def _child_section(path: str, name: str, schema: dict[str, Any]) -> Section | None:
    """The nested table a field points to, if it has one (an object, or a list of objects)."""
    if _is_object(schema):
        return Section(f"{path}.{name}", schema)
    items = schema.get("items")
    if schema.get("type") == "array" and isinstance(items, dict) and _is_object(items):
        return Section(f"{path}.{name}[]", items)
    return None


def sections(root: str, schema: dict[str, Any]) -> Iterator[Section]:
    """`root` and every object level below it, depth first in schema order."""
    yield Section(root, schema)
    for name, child in (schema.get("properties") or {}).items():
        nested = _child_section(root, name, child)
        if nested is not None:
            yield from sections(nested.path, nested.schema)


def anchor(kind: str, path: str) -> str:
    """A stable, GitHub-compatible anchor for a section heading."""
    text = f"{kind} {path}".lower()
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" if ch == " " else "" for ch in text)


def _heading(kind: str, path: str) -> str:
    return f"{kind} {path}"


def render_section(kind: str, section: Section) -> list[str]:
    schema = section.schema
    lines = [f"### {_heading(kind, section.path)}", ""]
    if schema.get("description"):
        lines += [_cell(str(schema["description"])), ""]
    object_rules = [f"- {rule}" for rule in validation_of(schema) if rule.startswith("CEL:")]
    if object_rules:
        lines += ["Object rules:", "", *object_rules, ""]
    required = set(schema.get("required") or [])
    lines += ["| Field | Type | Default | Validation | Description |", "|---|---|---|---|---|"]
    for name, child in (schema.get("properties") or {}).items():
        nested = _child_section(section.path, name, child)
        field = f"`{name}`" + (" (required)" if name in required else "")
        kind_text = f"`{type_of(child)}`"
        if nested is not None:
            kind_text = f"[{kind_text}](#{anchor(kind, nested.path)})"
        default = _code(_literal(child["default"])) if "default" in child else ""
        rules = validation_of(child)
        if nested is not None:
            # An object's own CEL rules are listed in its table; keep the rest (bounds, list type).
            rules = [rule for rule in rules if not rule.startswith("CEL:")]
        description = _cell(str(child.get("description", "")))
        lines.append(f"| {field} | {kind_text} | {default} | {'; '.join(rules)} | {description} |")
    lines.append("")
    return lines


def render_crd(crd: dict[str, Any]) -> list[str]:
    spec = crd["spec"]
    kind = str(spec["names"]["kind"])
    version = next(v for v in spec["versions"] if v.get("storage"))
    schema = version["schema"]["openAPIV3Schema"]
    names = spec["names"]
    short = ", ".join(f"`{n}`" for n in names.get("shortNames") or [])
    lines = [
        f"## {kind}",
        "",
        f"`apiVersion: {spec['group']}/{version['name']}`, `kind: {kind}`, {spec['scope'].lower()}; "
        f"`kubectl get {names['plural']}`" + (f" (short names {short})" if short else "") + ".",
        "",
        _cell(str(schema.get("description", ""))),
        "",
    ]
    columns = version.get("additionalPrinterColumns") or []
    if columns:
        lines += ["Columns of `kubectl get` (`-o wide` adds those with priority 1):", ""]
        lines += ["| Column | JSONPath | Wide only | Description |", "|---|---|---|---|"]
        for col in columns:
            wide = "yes" if col.get("priority", 0) > 0 else ""
            lines.append(f"| {col['name']} | {_code(col['jsonPath'])} | {wide} | {_cell(col.get('description', ''))} |")
        lines.append("")
    for part in ("spec", "status"):
        sub = (schema.get("properties") or {}).get(part)
        if sub is None:
            continue
        for section in sections(part, sub):
            lines += render_section(kind, section)
    return lines


def render(crds: Sequence[dict[str, Any]] | None = None) -> str:
    """The whole docs/reference.md text."""
    crds = load_crds() if crds is None else crds
    lines = [
        "# CRD reference",
        "",
        "<!-- Generated from crds/*.yaml by `python -m nassync_dev.crdref`; do not edit by hand. -->",
        "",
        "Every field of the nassync custom resources, generated from the CustomResourceDefinitions in `crds/`",
        "(what the apiserver enforces). Each object level has its own table; a type links to the table of",
        "its fields. *Validation* lists what the apiserver refuses, including the messages of the CEL rules",
        "(`x-kubernetes-validations`). The validating webhook adds cluster-wide checks (see",
        "[api.md](api.md#where-each-rule-is-enforced)); [concepts.md](concepts.md) explains what the fields mean",
        "together.",
        "",
        "Contents:",
        "",
    ]
    for crd in crds:
        kind = str(crd["spec"]["names"]["kind"])
        version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        schema = version["schema"]["openAPIV3Schema"]
        lines.append(f"- [{kind}](#{kind.lower()})")
        for part in ("spec", "status"):
            if part in (schema.get("properties") or {}):
                lines.append(f"  - [{kind} {part}](#{anchor(kind, part)})")
    lines.append("")
    for crd in crds:
        lines += render_crd(crd)
    return "\n".join(lines).rstrip("\n") + "\n"


def stale(output: Path = OUTPUT, crd_dir: Path = CRD_DIR) -> bool:
    """True when `output` is missing or differs from what the CRDs generate."""
    try:
        current = output.read_text(encoding="utf-8")
    except FileNotFoundError:
        return True
    return current != render(load_crds(crd_dir))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nassync_dev.crdref", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the output file is stale; write nothing")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"file to write (default {OUTPUT})")
    parser.add_argument("--crds", type=Path, default=CRD_DIR, help=f"directory of CRD YAML files (default {CRD_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        if stale(args.output, args.crds):
            print(f"{args.output} is stale or missing; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    text = render(load_crds(args.crds))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
