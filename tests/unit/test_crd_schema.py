"""The CRDs in crds/ and the pydantic models in nassync.api agree.

The CRD is what the apiserver enforces and prunes by; the models are what the
operator reads and writes. If a status field exists only in the model, the
apiserver silently drops it (and the operator forgets, e.g., how many verify
passes it saw); if a default differs, the object means something else
depending on who reads it. So this walks both trees in lockstep and compares
field sets, types, required-ness, bounds and defaults at every level.

The CEL rules are cross-checked too: they use a tiny subset of CEL (string
methods, `has`, `!`, `&&`, `==`/`!=`), which is translated to Python here and
evaluated on the same table the models are tested with, so the apiserver and
the model judge each runPath identically and with the same message.
"""

from __future__ import annotations

import re
import types
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from nassync.api.durations import DURATION_PATTERN
from nassync.api.syncjob import SyncJob, SyncJobSpec, SyncJobStatus, check_run_path
from nassync.api.target import SyncTarget, SyncTargetSpec, SyncTargetStatus

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
SAMPLES = REPO / "manifests" / "samples"


def _crd(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CRDS / f"nassync.dev_{name}.yaml").read_text())
    return loaded


def _root(name: str) -> dict[str, Any]:
    version = _crd(name)["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


SCHEMAS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "syncjobs": (SyncJobSpec, SyncJobStatus),
    "synctargets": (SyncTargetSpec, SyncTargetStatus),
}


# --- model introspection -------------------------------------------------------


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """Remove Optional and Annotated; return the bare type and collected metadata."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            metadata.extend(extra)
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation, metadata


def _constraints(info: FieldInfo, extra: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in [*info.metadata, *extra]:
        if isinstance(item, FieldInfo):
            found.update(_constraints(item, []))
        for attr in ("min_length", "max_length", "ge", "le", "pattern"):
            value = getattr(item, attr, None)
            if value is not None and not callable(value):
                found[attr] = value
        if isinstance(item, annotated_types.MinLen):
            found["min_length"] = item.min_length
        if isinstance(item, annotated_types.MaxLen):
            found["max_length"] = item.max_length
    return found


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _compare_type(tp: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """Yield a message for every disagreement between a model type and a schema node."""
    origin = get_origin(tp)
    if _is_model(tp):
        if schema.get("type") != "object":
            yield f"{path}: model {tp.__name__} but schema type {schema.get('type')}"
            return
        yield from _compare_model(tp, schema, path)
    elif origin is list:
        if schema.get("type") != "array":
            yield f"{path}: list in model, {schema.get('type')} in schema"
            return
        (item,) = get_args(tp)
        item, _ = _strip(item)
        yield from _compare_type(item, schema["items"], f"{path}[]")
    elif origin is dict:
        _key, value = get_args(tp)
        value, _ = _strip(value)
        if schema.get("type") != "object" or "additionalProperties" not in schema:
            yield f"{path}: dict in model, schema lacks additionalProperties"
            return
        value_schema = schema["additionalProperties"]
        value_args = set(get_args(value))
        if value_args == {str, int}:
            if not value_schema.get("x-kubernetes-int-or-string"):
                yield f"{path}: str | int values need x-kubernetes-int-or-string"
        else:
            yield from _compare_type(value, value_schema, f"{path}{{}}")
    elif origin is Literal or (isinstance(tp, type) and issubclass(tp, Enum)):
        values = [str(v) for v in get_args(tp)] if origin is Literal else [str(member.value) for member in tp]
        if schema.get("type") != "string" or sorted(schema.get("enum", [])) != sorted(values):
            yield f"{path}: enum {sorted(values)} vs schema {schema.get('enum')}"
    elif tp is datetime:
        if schema.get("type") != "string" or schema.get("format") != "date-time":
            yield f"{path}: datetime must be string/date-time in the schema"
    elif tp is bool:
        if schema.get("type") != "boolean":
            yield f"{path}: bool vs {schema.get('type')}"
    elif tp is int:
        if schema.get("type") != "integer":
            yield f"{path}: int vs {schema.get('type')}"
    elif tp is str:
        if schema.get("type") != "string":
            yield f"{path}: str vs {schema.get('type')}"
    else:
        yield f"{path}: unhandled model type {tp!r}"


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema's bounds under the names pydantic uses."""
    mapping = {
        "minLength": "min_length",
        "maxLength": "max_length",
        "minItems": "min_length",
        "maxItems": "max_length",
        "maxProperties": "max_length",
        "minimum": "ge",
        "maximum": "le",
        "pattern": "pattern",
    }
    return {mapping[k]: v for k, v in schema.items() if k in mapping}


def _default_of(info: FieldInfo) -> tuple[bool, Any]:
    """(has a non-empty default, its JSON form) for a model field."""
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.is_required():
        return False, None
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return True, {}  # object defaults appear as `default: {}`; inner defaults recurse
    if isinstance(value, Enum):
        value = value.value
    if value is None or value == [] or value == {}:
        return False, None
    return True, value


def _compare_model(model: type[BaseModel], schema: dict[str, Any], path: str) -> Iterator[str]:
    props: dict[str, Any] = schema.get("properties", {})
    fields = {(info.alias or name): (name, info) for name, info in model.model_fields.items()}
    if set(fields) != set(props):
        yield (
            f"{path}: only in model {sorted(set(fields) - set(props))}, only in CRD {sorted(set(props) - set(fields))}"
        )
    required = {alias for alias, (_, info) in fields.items() if info.is_required()}
    if required != set(schema.get("required", [])):
        yield f"{path}: required {sorted(required)} vs CRD {sorted(schema.get('required', []))}"
    for alias, (_name, info) in fields.items():
        if alias not in props:
            continue
        node = props[alias]
        tp, extra = _strip(info.annotation)
        yield from _compare_type(tp, node, f"{path}.{alias}")
        model_bounds = _constraints(info, extra)
        schema_bounds = _bounds(node)
        if tp is str and node.get("pattern") == DURATION_PATTERN:
            # Durations are checked by a validator (parse_duration), not a pattern.
            schema_bounds.pop("pattern")
            schema_bounds.pop("min_length", None)
        if model_bounds != schema_bounds:
            yield f"{path}.{alias}: bounds {model_bounds} vs CRD {schema_bounds}"
        has_default, default = _default_of(info)
        if has_default:
            if node.get("default") != default:
                yield f"{path}.{alias}: default {default!r} vs CRD {node.get('default')!r}"
        elif "default" in node:
            yield f"{path}.{alias}: CRD default {node['default']!r} but the model has none"


@pytest.mark.parametrize("crd_name", sorted(SCHEMAS))
@pytest.mark.parametrize("part", ["spec", "status"])
def test_crd_and_model_agree(crd_name: str, part: str) -> None:
    spec_model, status_model = SCHEMAS[crd_name]
    model = spec_model if part == "spec" else status_model
    problems = list(_compare_model(model, _root(crd_name)["properties"][part], part))
    assert problems == []


def test_comparison_detects_a_drift() -> None:
    """The walker must fail on a renamed field, a wrong type and a changed default."""
    schema = _root("synctargets")["properties"]["spec"]
    drifted = yaml.safe_load(yaml.safe_dump(schema))
    retry = drifted["properties"]["retry"]["properties"]
    retry["maxRetries"] = retry.pop("maxAttempts")
    drifted["properties"]["concurrency"]["type"] = "string"
    drifted["properties"]["cleanup"]["properties"]["minVerifyPasses"]["default"] = 1
    problems = list(_compare_model(SyncTargetSpec, drifted, "spec"))
    assert any("maxRetries" in p and "maxAttempts" in p for p in problems)
    assert any("spec.concurrency" in p for p in problems)
    assert any("minVerifyPasses: default 2" in p for p in problems)


def test_top_level_properties() -> None:
    for crd_name, model in (("syncjobs", SyncJob), ("synctargets", SyncTarget)):
        root = _root(crd_name)
        aliases = {info.alias or name for name, info in model.model_fields.items()}
        assert (
            set(root["properties"])
            == aliases
            == {
                "apiVersion",
                "kind",
                "metadata",
                "spec",
                "status",
            }
        )
        assert root["required"] == ["spec"]


# --- CRD hygiene -------------------------------------------------------------------


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd_name", sorted(SCHEMAS))
def test_every_field_has_a_description(crd_name: str) -> None:
    missing = [
        path
        for path, node in _walk(_root(crd_name), "")
        if path != ".metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == []


@pytest.mark.parametrize("crd_name", sorted(SCHEMAS))
def test_strings_and_lists_are_bounded(crd_name: str) -> None:
    """CEL cost estimates need bounds; unbounded spec strings/lists would exceed them."""
    unbounded = []
    for path, node in _walk(_root(crd_name)["properties"]["spec"], "spec"):
        if (
            node.get("type") == "string"
            and "maxLength" not in node
            and "enum" not in node
            and node.get("format") != "date-time"  # RFC 3339 times have a fixed shape
        ):
            unbounded.append(path)
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
    assert unbounded == []


def test_crd_names_and_columns() -> None:
    jobs, targets = _crd("syncjobs"), _crd("synctargets")
    for crd, plural, short in ((jobs, "syncjobs", "sj"), (targets, "synctargets", "st")):
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["metadata"]["name"] == f"{plural}.nassync.dev"
        assert crd["spec"]["group"] == "nassync.dev"
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["shortNames"] == [short]
        assert crd["spec"]["names"]["categories"] == ["nassync"]
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}

    columns = {c["name"]: c for c in jobs["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(columns) == ["Target", "Phase", "Size", "Progress", "Verified", "Copies", "Age", "Error"]
    assert columns["Size"] == {
        "name": "Size",
        "type": "integer",
        "jsonPath": ".status.manifest.bytes",
        "description": columns["Size"]["description"],
    }
    assert columns["Progress"]["jsonPath"] == ".status.transfer.progress.percent"
    assert columns["Progress"].get("priority", 0) == 0
    assert columns["Verified"]["jsonPath"] == ".status.verifyPasses"
    assert columns["Error"]["jsonPath"] == ".status.lastError.message"
    assert columns["Error"]["priority"] == 1
    assert all(c.get("priority", 0) == 0 for n, c in columns.items() if n != "Error")

    tcols = {c["name"]: c for c in targets["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(tcols) == ["Source", "Destination", "Ready", "Active", "Queued", "Age"]
    assert tcols["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert tcols["Active"]["jsonPath"] == ".status.activeMovers"


def test_printer_column_paths_exist_in_the_schema() -> None:
    for crd_name in SCHEMAS:
        crd = _crd(crd_name)
        root = _root(crd_name)
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            parts = re.sub(r"\[\?.*?\]", "", column["jsonPath"]).strip(".").split(".")
            if parts[0] == "metadata":
                continue
            node = root
            for part in parts:
                node = node.get("items", node)
                assert part in node.get("properties", {}), f"{crd_name}: {column['jsonPath']}"
                node = node["properties"][part]


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    for crd_name in SCHEMAS:
        conditions = _root(crd_name)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]


# --- CEL rules, evaluated with a translator for the subset the CRDs use ------------


def _cel_to_python(rule: str) -> str:
    expr = re.sub(r"has\(self\.(\w+)\.(\w+)\)", r"('\2' in (self.get('\1') or {}))", rule)
    expr = re.sub(r"has\(self\.(\w+)\)", r"('\1' in self)", expr)
    expr = re.sub(r"self\.(matches|startsWith|endsWith|contains)\(", r"_\1(self, ", expr)
    # self.split(sep).exists(x, <predicate of x>) -> any(<predicate> for x in self.split(sep))
    expr = re.sub(r"self\.split\(('[^']*')\)\.exists\((\w+),\s*(.*)\)$",
                  r"any((\3) for \2 in self.split(\1))", expr)
    expr = re.sub(r"\bself\.(\w+)\b(?!\()", r"self.get('\1')", expr)  # field access
    expr = expr.replace("&&", " and ").replace("||", " or ").replace("oldSelf", "old_self")
    expr = re.sub(r"!(?!=)", " not ", expr)
    assert re.search(r"self\.(?!get\(|split\()", expr) is None, f"CEL construct not covered by the translator: {rule}"
    return expr


def _re2_search(text: str, pattern: str) -> bool:
    """RE2's unanchored search; Unicode category classes (only as a whole class) via unicodedata."""
    categories = re.findall(r"\\p\{(\w+)\}", pattern)
    if categories:
        assert re.sub(r"\\p\{\w+\}", "", pattern) == "[]", f"RE2 construct not covered: {pattern}"
        return any(unicodedata.category(ch) in categories for ch in text)
    return re.search(pattern, text) is not None


_CEL_FUNCS: dict[str, Any] = {
    # CEL's matches() is an unanchored RE2 search, like re.search.
    "_matches": _re2_search,
    "_startsWith": lambda s, p: s.startswith(p),
    "_endsWith": lambda s, p: s.endswith(p),
    "_contains": lambda s, p: p in s,
}


def _cel_messages(node: dict[str, Any], value: Any, old: Any = None) -> list[str]:
    """Messages of the node's CEL rules that `value` violates (transition rules need `old`)."""
    failed = []
    for validation in node.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        if "oldSelf" in rule and old is None:
            continue
        scope = {"self": value, "old_self": old}
        if not eval(_cel_to_python(rule), dict(_CEL_FUNCS), scope):
            failed.append(validation["message"])
    return failed


RUN_PATH_CASES = [
    "PROJ-0001/Runs/Run_2026-11-28T10-15",
    "a",
    "a..b/c",
    "..a/.b/c.",
    "ünï cödé/ok",
    "/abs/path",
    "/",
    "a/../b",
    "..",
    "a/..",
    "a//b",
    "a/",
    "./a",
    "a/./b",
    ".",
    "a\x01b",
    "a\x7fb",
    "tab\there",
    "new\nline",
    "/a/../b//c\x00",
    "zero\u200bwidth",
    "rtl\u202eoverride",
    "next\u0085line",
    "line\u2028separator",
    "para\u2029graph",
    "ok\u00e9\u4e2d",
]


@pytest.mark.parametrize("value", RUN_PATH_CASES)
def test_run_path_cel_matches_model(value: str) -> None:
    node = _root("syncjobs")["properties"]["spec"]["properties"]["runPath"]
    assert _cel_messages(node, value) == check_run_path(value)


def test_run_path_cel_rejects_what_it_should() -> None:
    """Guards the table above against both sides silently accepting everything."""
    node = _root("syncjobs")["properties"]["spec"]["properties"]["runPath"]
    assert _cel_messages(node, "a/b") == []
    assert len(_cel_messages(node, "/a/../b//c\x00")) == 5  # NUL is a control and an invisible character


def test_identity_fields_are_immutable() -> None:
    spec = _root("syncjobs")["properties"]["spec"]["properties"]
    assert _cel_messages(spec["runPath"], "a/c", old="a/b") == ["spec.runPath is immutable; create a new SyncJob"]
    assert _cel_messages(spec["runPath"], "a/b", old="a/b") == []
    changed = _cel_messages(spec["targetRef"], {"name": "b"}, old={"name": "a"})
    assert len(changed) == 1 and "spec.targetRef is immutable" in changed[0]
    assert _cel_messages(spec["targetRef"], {"name": "a"}, old={"name": "a"}) == []


@pytest.mark.parametrize(
    ("volume", "ok"),
    [
        ({"hostPath": {"path": "/d"}}, True),
        ({"persistentVolumeClaim": {"claimName": "c"}}, True),
        ({}, False),
        ({"hostPath": {"path": "/d"}, "persistentVolumeClaim": {"claimName": "c"}}, False),
    ],
)
def test_volume_exactly_one_cel_and_model(volume: dict[str, Any], ok: bool) -> None:
    node = _root("synctargets")["properties"]["spec"]["properties"]["source"]["properties"]
    assert (_cel_messages(node["volume"], volume) == []) is ok
    body = {
        "spec": {
            "source": {"volume": volume},
            "destination": {"rsync": {"host": "h", "user": "u", "path": "/p", "sshSecretRef": {"name": "s"}}},
        }
    }
    try:
        SyncTarget.from_body(body)
        model_ok = True
    except ValueError:
        model_ok = False
    assert model_ok is ok


@pytest.mark.parametrize(
    ("destination", "ok"),
    [
        ({"rclone": {}}, True),
        ({"rsync": {}}, True),
        ({"volume": {}}, True),
        ({}, False),
        ({"rclone": {}, "rsync": {}}, False),
        ({"rsync": {}, "volume": {}}, False),
        ({"rclone": {}, "rsync": {}, "volume": {}}, False),
    ],
)
def test_destination_exactly_one_cel(destination: dict[str, Any], ok: bool) -> None:
    node = _root("synctargets")["properties"]["spec"]["properties"]["destination"]
    messages = _cel_messages(node, destination)
    assert (messages == []) is ok
    if not ok:
        assert messages == [
            "exactly one of spec.destination.rclone or spec.destination.rsync or spec.destination.volume must be set"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [(".exlab-wizard", True), ("meta", True), ("a/b", False), (".", False), ("..", False)],
)
def test_cache_dir_name_cel(value: str, ok: bool) -> None:
    node = _root("synctargets")["properties"]["spec"]["properties"]["source"]["properties"]
    assert (_cel_messages(node["cacheDirName"], value) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [("6h", True), ("1s", True), ("0s", False), ("0h0m", False)])
def test_reverify_interval_positive_cel(value: str, ok: bool) -> None:
    cleanup = _root("synctargets")["properties"]["spec"]["properties"]["cleanup"]["properties"]
    assert (_cel_messages(cleanup["reverifyInterval"], value) == []) is ok


def test_cel_control_character_regex_is_escaped_for_re2() -> None:
    """YAML must hand CEL `\\\\x00` so that CEL hands RE2 the escape `\\x00`, not a NUL byte."""
    rules = [
        v["rule"]
        for _, node in _walk(_root("syncjobs"), "")
        for v in node.get("x-kubernetes-validations", [])
        if "x00" in v["rule"]
    ]
    assert rules == ["!self.matches('[\\\\x00-\\\\x1f\\\\x7f]')"]


# --- samples -------------------------------------------------------------------------


def _schema_problems(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """A small OpenAPI check: types, enums, patterns, required and unknown keys."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str):
            yield f"{path}: not int-or-string"
        return
    if kind == "object":
        if not isinstance(value, dict):
            yield f"{path}: not an object"
            return
        for key in schema.get("required", []):
            if key not in value:
                yield f"{path}.{key}: required"
        props = schema.get("properties")
        for key, child in value.items():
            if props is not None and key in props:
                yield from _schema_problems(child, props[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from _schema_problems(child, schema["additionalProperties"], f"{path}.{key}")
            elif props is not None and path != ".metadata":
                yield f"{path}.{key}: unknown field (the apiserver would prune it)"
    elif kind == "array":
        if not isinstance(value, list):
            yield f"{path}: not a list"
            return
        for index, item in enumerate(value):
            yield from _schema_problems(item, schema["items"], f"{path}[{index}]")
    elif kind == "string":
        if not isinstance(value, str):
            yield f"{path}: not a string"
            return
        if "enum" in schema and value not in schema["enum"]:
            yield f"{path}: {value!r} not in {schema['enum']}"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield f"{path}: {value!r} does not match {schema['pattern']}"
    elif kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        yield f"{path}: not an integer"
    elif kind == "boolean" and not isinstance(value, bool):
        yield f"{path}: not a boolean"
    for message in _cel_messages(schema, value) if kind != "object" or isinstance(value, dict) else []:
        yield f"{path}: {message}"


KINDS: dict[str, tuple[str, type[SyncTarget] | type[SyncJob]]] = {
    "SyncTarget": ("synctargets", SyncTarget),
    "SyncJob": ("syncjobs", SyncJob),
}


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.yaml")))
def test_samples_validate_against_crd_and_models(sample: str) -> None:
    body = yaml.safe_load((SAMPLES / sample).read_text())
    crd_name, model = KINDS[body["kind"]]
    assert "namespace" not in body["metadata"]  # so `kubectl apply -n` works
    assert list(_schema_problems(body, _root(crd_name), "")) == []
    loaded = model.from_body(body)
    # Everything the sample says survives the model unchanged.
    dumped = loaded.to_api()
    assert _is_subset(body["spec"], dumped["spec"])


def test_sample_checker_finds_problems() -> None:
    body = yaml.safe_load((SAMPLES / "syncjob.yaml").read_text())
    body["spec"]["runPath"] = "/etc/../shadow"
    body["spec"]["typo"] = True
    problems = list(_schema_problems(body, _root("syncjobs"), ""))
    assert any("no leading '/'" in p for p in problems)
    assert any(".spec.typo: unknown field" in p for p in problems)


def test_samples_cover_both_destinations_and_sources() -> None:
    rclone = SyncTarget.from_body(yaml.safe_load((SAMPLES / "synctarget-rclone.yaml").read_text()))
    rsync = SyncTarget.from_body(yaml.safe_load((SAMPLES / "synctarget-rsync.yaml").read_text()))
    assert rclone.spec.destination.type == "rclone"
    assert rsync.spec.destination.type == "rsync"
    assert rclone.spec.source.volume.host_path is not None
    assert rsync.spec.source.volume.persistent_volume_claim is not None
    assert rclone.spec.cleanup.enabled is False  # the documented default posture


def _is_subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _is_subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(small) == len(big)
            and all(_is_subset(a, b) for a, b in zip(small, big, strict=True))
        )
    return bool(small == big)
