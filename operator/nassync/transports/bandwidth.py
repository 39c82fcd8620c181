"""Bandwidth schedule: which upload limit applies when, in the target's local time.

Labs throttle NAS uploads during working hours and let them run free at night.
A `SyncTarget` states that as a default rate plus weekly windows
(`days`, `start`, `end`, `limitKiBps`) in an IANA time zone; the first window
that matches wins and `0` means unlimited. A window whose end is not after its
start crosses midnight, and the part after midnight still belongs to the listed
day: a Fri 22:00-06:00 window covers Saturday 00:00-06:00.

Two consumers need the same answer. `limit_at` gives the limit at one instant
(status shows it; rsync gets it once per attempt). rclone, whose transfers can
last longer than a window, gets the whole week as a `--bwlimit` timetable and
switches by itself; `rclone_timetable` emits one entry at every minute where
the limit changes, so that — evaluated by rclone in the same zone (`TZ=`) — it
agrees with `limit_at` at every minute of the week. Because rclone picks the
latest entry at or before "now" and otherwise wraps to the *last entry listed*,
the entries are listed Sunday-first (rclone's week) and always include
Sun-00:00, so no lookup ever depends on the wrap.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nassync.api.mover_io import DAYS, Bandwidth, BandwidthWindow

MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_RCLONE_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")  # rclone's week starts Sunday


@dataclass(frozen=True)
class _Span:
    """A half-open interval of minutes-of-week, start in [0, week), may run past the week."""

    start: int
    end: int
    limit_kibps: int

    def covers(self, minute: int) -> bool:
        # Test the minute and its next-week alias so spans that wrap Sun→Mon work.
        return any(self.start <= m < self.end for m in (minute, minute + MINUTES_PER_WEEK))


def _minutes(hhmm: str) -> int:
    match = _HHMM.fullmatch(hhmm)
    if match is None:
        raise ValueError(f"bad time {hhmm!r}: expected HH:MM, 00:00-23:59")
    return int(match.group(1)) * 60 + int(match.group(2))


def validate_windows(bw: Bandwidth) -> list[str]:
    """Human-readable problems with the schedule; empty when it is usable."""
    errors: list[str] = []
    try:
        ZoneInfo(bw.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"unknown time zone {bw.time_zone!r}")
    for number, window in enumerate(bw.windows, start=1):
        where = f"window {number}"
        if not window.days:
            errors.append(f"{where}: days must not be empty")
        errors.extend(
            f"{where}: unknown day {day!r} (use {', '.join(DAYS)})"
            for day in window.days
            if day not in DAYS
        )
        for label, value in (("start", window.start), ("end", window.end)):
            if _HHMM.fullmatch(value) is None:
                errors.append(f"{where}: {label} {value!r} is not HH:MM (00:00-23:59)")
    return errors


def _spans(window: BandwidthWindow) -> list[_Span]:
    start, end = _minutes(window.start), _minutes(window.end)
    length = end - start if end > start else end - start + MINUTES_PER_DAY
    spans = []
    for day in window.days:
        if day not in DAYS:
            raise ValueError(f"unknown day {day!r}")
        first = DAYS.index(day) * MINUTES_PER_DAY + start
        spans.append(_Span(first, first + length, window.limit_kibps))
    return spans


def _checked(bw: Bandwidth) -> list[list[_Span]]:
    errors = validate_windows(bw)
    if errors:
        raise ValueError("; ".join(errors))
    return [_spans(window) for window in bw.windows]


def _limit_at_minute(windows: list[list[_Span]], default: int, minute: int) -> int:
    for spans in windows:  # first matching window wins
        for span in spans:
            if span.covers(minute):
                return span.limit_kibps
    return default


def minute_of_week(local: datetime) -> int:
    """Minutes since Monday 00:00 of the wall-clock time `local`."""
    return local.weekday() * MINUTES_PER_DAY + local.hour * 60 + local.minute


def limit_at(bw: Bandwidth, when: datetime) -> int:
    """KiB/s in force at `when` (aware); 0 = unlimited. Raises ValueError on a bad schedule."""
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    windows = _checked(bw)
    local = when.astimezone(ZoneInfo(bw.time_zone))
    return _limit_at_minute(windows, bw.default_kibps, minute_of_week(local))


def next_change(bw: Bandwidth, when: datetime) -> datetime | None:
    """The first minute boundary after `when` at which the limit differs; None if it never does.

    Tools without a timetable (rsync) are restarted there with the new limit.
    """
    limits = weekly_limits(bw)
    if len(set(limits)) == 1:
        return None
    zone = ZoneInfo(bw.time_zone)
    start = when.astimezone(UTC).replace(second=0, microsecond=0)
    current = limit_at(bw, when)
    # Walk in UTC minutes so DST jumps in the local zone cannot skip or repeat a step.
    for step in range(1, MINUTES_PER_WEEK + 2 * 60 + 1):
        candidate = start + timedelta(minutes=step)
        if limits[minute_of_week(candidate.astimezone(zone))] != current:
            return candidate
    return None


def weekly_limits(bw: Bandwidth) -> list[int]:
    """The limit at every minute of the week, Monday 00:00 first."""
    windows = _checked(bw)
    return [_limit_at_minute(windows, bw.default_kibps, m) for m in range(MINUTES_PER_WEEK)]


def rclone_rate(kibps: int) -> str:
    return "off" if kibps == 0 else f"{kibps}K"


def _rclone_label(minute: int) -> str:
    day, rest = divmod(minute, MINUTES_PER_DAY)
    return f"{DAYS[day]}-{rest // 60:02d}:{rest % 60:02d}"


def rclone_timetable(bw: Bandwidth) -> str:
    """rclone `--bwlimit` value reproducing limit_at (rclone run with TZ=bw.time_zone)."""
    limits = weekly_limits(bw)
    if len(set(limits)) == 1:
        return rclone_rate(limits[0])
    sunday = DAYS.index("Sun") * MINUTES_PER_DAY
    # Walk the week in rclone's order (Sun 00:00 first) and emit every change.
    order = [(sunday + offset) % MINUTES_PER_WEEK for offset in range(MINUTES_PER_WEEK)]
    entries: list[str] = []
    previous: int | None = None
    for minute in order:
        if limits[minute] != previous:
            entries.append(f"{_rclone_label(minute)},{rclone_rate(limits[minute])}")
            previous = limits[minute]
    return " ".join(entries)
