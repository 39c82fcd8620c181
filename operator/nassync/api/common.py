"""Building blocks shared by the SyncTarget and SyncJob models.

Every API model derives from `ApiModel`: Python attributes are snake_case,
the wire format is the camelCase of the CRDs (`alias_generator=to_camel`), and
either spelling is accepted on input so tests and the decision core can build
values naturally. Unknown keys are ignored rather than rejected: the apiserver
already prunes what the CRD does not declare, and an operator reading an
object written by a newer version must not crash on an additive field.

Times are `datetime` in Python (always timezone-aware UTC after validation)
and RFC 3339 strings with second precision (`2026-11-28T10:15:00Z`) on the
wire, which is what `metav1.Time` looks like and what `kubectl` prints.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, overload

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from nassync.api.durations import DURATION_MAX_LENGTH, parse_duration

GROUP = "nassync.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes object-name limits: DNS-1123 subdomain for most objects.
DNS1123_SUBDOMAIN_MAX = 253
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Secret keys: what `kubectl create secret --from-file` allows as a data key.
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
SECRET_KEY_MAX = 253
# Conditions per object; a bound the CRD needs for CEL cost estimation.
MAX_CONDITIONS = 32


def has_control_character(text: str) -> bool:
    """True when `text` holds an ASCII control character (C0 or DEL).

    The one definition of "control character" for names that reach a pod, a
    NAS path or a manifest line; the CRD's CEL rules use the same range.
    """
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def has_invisible_character(text: str) -> bool:
    """True when `text` holds a control, format (U+200B, U+202E, ...) or line/paragraph separator.

    Such characters make a name look like another one in every listing (or
    break it over lines); the CRD's CEL rule uses the same Unicode classes.
    """
    return any(unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in text)


def _as_utc(value: datetime) -> datetime:
    # A naive time can only have come from our own code (the apiserver always
    # sends 'Z'); treating it as UTC is the one reading that cannot shift it.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC, microsecond=0)
    return value.astimezone(UTC).replace(microsecond=0)


def format_time(value: datetime) -> str:
    """RFC 3339, UTC, second precision: the `metav1.Time` wire format."""
    return _as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


class InvalidTime(ValueError):
    """A timestamp that is present but cannot be read."""


@overload
def parse_time(value: None) -> None: ...
@overload
def parse_time(value: str | datetime) -> datetime: ...
def parse_time(value: str | datetime | None) -> datetime | None:
    """An aware UTC datetime from ISO 8601 / RFC 3339 text or a datetime; None stays None.

    The one reader of times that come from outside (the apiserver, mover
    results, creation.json). A value without an offset is UTC: Kubernetes and
    the lab app both write UTC. A date alone is midnight UTC. Raises
    `InvalidTime` for anything unreadable, so each caller says what doubt means.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError as exc:
            raise InvalidTime(f"unreadable timestamp {text!r}") from exc
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


Timestamp = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]


def _check_duration(value: str) -> str:
    parse_duration(value)  # raises ValueError with an example of what is accepted
    return value


# A duration string such as `10m`; kept as the user wrote it (GitOps diffs stay
# clean) and converted with nassync.api.durations.parse_duration when used.
Duration = Annotated[str, Field(max_length=DURATION_MAX_LENGTH), AfterValidator(_check_duration)]


class ApiModel(BaseModel):
    """Base for every SyncTarget/SyncJob model: snake_case in Python, camelCase on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        validate_assignment=True,
    )

    def to_api(self, *, exclude_none: bool = True) -> dict[str, Any]:
        """The camelCase JSON-ready dict the apiserver expects.

        Pass `exclude_none=False` when building a merge patch that must clear
        fields (a JSON merge patch removes a key only when it is sent as null).
        """
        return self.model_dump(mode="json", by_alias=True, exclude_none=exclude_none)


class Condition(ApiModel):
    """A status condition following the Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(min_length=1, max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(default="", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: Timestamp | None = None
    observed_generation: int | None = Field(default=None, ge=0)


class LocalObjectReference(ApiModel):
    """A reference to an object by name in the same namespace."""

    name: str = Field(min_length=1, max_length=DNS1123_SUBDOMAIN_MAX, pattern=DNS1123_SUBDOMAIN_PATTERN)


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of the given type, if present (types are unique per object)."""
    return next((c for c in conditions if c.type == type_), None)


def plain(value: Any) -> Any:
    """Deep-copy a Mapping/sequence tree (e.g. a kopf Body) into dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def dig(data: Any, *keys: str) -> Any:
    """`data[k1][k2]...` through nested mappings; None where a level is missing."""
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


class ResourceModel(ApiModel):
    """A whole object as the apiserver returns it; subclasses add `kind`, `spec`, `status`.

    `from_body` treats a missing or null status as empty. Unknown fields are
    ignored (written by a newer operator); a known field with a wrong type still
    raises, because guessing at the operator's own memory could, e.g., reset
    verifyPasses.
    """

    api_version: str = API_VERSION
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        data = plain(body)
        if not isinstance(data.get("status"), dict):
            data["status"] = {}
        data.setdefault("kind", cls.model_fields["kind"].default)
        data.setdefault("apiVersion", API_VERSION)
        return cls.model_validate(data)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))
