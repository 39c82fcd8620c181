"""Kubernetes-style duration strings (`0s`, `90s`, `10m`, `24h`, `1h30m`) <-> seconds.

The API carries durations as strings because that is what Kubernetes users
already type (`metav1.Duration`, `kubectl wait --timeout`), and a string like
`24h` survives GitOps review far better than `86400`. The operator itself only
ever computes with whole seconds, so this module is the single place that
converts between the two.

The accepted grammar is deliberately a strict subset of Go's
`time.ParseDuration`: non-negative integers followed by `h`, `m` or `s`, each
unit at most once and in that order. No fractions, signs, `ms`/`us`/`ns` or
spaces: none of the interlocks need sub-second precision, and refusing
ambiguous input (is `1.5h` 90 minutes? is `-1s` "never"?) is safer for a field
such as `cleanup.minAgeAfterVerify` that guards deleting instrument data.

`DURATION_PATTERN` is written so that both Python's `re` and the apiserver's
OpenAPI `pattern` (Go RE2) accept it unchanged; the CRDs embed it verbatim
(with `minLength: 1`, since every part is optional in the regex).
"""

from __future__ import annotations

import re

# Each group is optional, so an empty string matches too: callers reject "" separately
# (the CRD with minLength: 1). RE2 has no look-ahead, which is why this is not folded in.
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
# Upper bound on the string length, used as the CRD's maxLength. Durations longer
# than this are certainly typos, and bounding strings keeps CEL cost estimates low.
DURATION_MAX_LENGTH = 32

_DURATION_RE = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}


def is_duration(text: str) -> bool:
    """True when `text` is a duration this API accepts (see the module docstring)."""
    return bool(text) and len(text) <= DURATION_MAX_LENGTH and _DURATION_RE.match(text) is not None


def parse_duration(text: str) -> int:
    """Return the number of seconds `text` denotes.

    Raises ValueError with a message that shows an accepted example, because
    this message ends up in front of a lab admin who mistyped a field.
    """
    if not is_duration(text):
        raise ValueError(
            f"invalid duration {text!r}: use a whole number of hours, minutes and/or "
            "seconds such as '0s', '90s', '10m', '24h' or '1h30m'"
        )
    total = 0
    for part in re.findall(r"[0-9]+[hms]", text):
        total += int(part[:-1]) * _UNIT_SECONDS[part[-1]]
    return total


def format_duration(seconds: int) -> str:
    """Render whole seconds in the shortest canonical form (`5400` -> `1h30m`, `0` -> `0s`)."""
    if seconds < 0:
        raise ValueError(f"durations cannot be negative, got {seconds}")
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value]
    return "".join(parts)
