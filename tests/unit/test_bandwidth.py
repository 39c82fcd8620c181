"""Bandwidth schedule: limit_at semantics and the rclone timetable that reproduces it."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nassync.api.mover_io import Bandwidth
from nassync.transports.bandwidth import (
    DAYS,
    MINUTES_PER_WEEK,
    limit_at,
    rclone_timetable,
    validate_windows,
)

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday, 00:00 UTC
WORKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]


def bw(windows: list[dict[str, Any]], *, default: int = 0, tz: str = "UTC") -> Bandwidth:
    return Bandwidth.model_validate({"timeZone": tz, "defaultKiBps": default, "windows": windows})


def win(days: list[str], start: str, end: str, limit: int) -> dict[str, Any]:
    return {"days": days, "start": start, "end": end, "limitKiBps": limit}


def at(day: int, hhmm: str, *, second: int = 0, tz: ZoneInfo | None = None) -> datetime:
    """Wall-clock time on the day `day` days after Monday 2026-11-30."""
    hour, minute = map(int, hhmm.split(":"))
    base = datetime(2026, 11, 30, hour, minute, second) + timedelta(days=day)
    return base.replace(tzinfo=tz or UTC)


OFFICE = bw([win(WORKDAYS, "08:00", "18:00", 6400)], default=0)


@pytest.mark.parametrize(
    ("when", "limit"),
    [
        (at(0, "07:59", second=59), 0),
        (at(0, "08:00"), 6400),  # start inclusive
        (at(0, "17:59", second=59), 6400),
        (at(0, "18:00"), 0),  # end exclusive
        (at(4, "12:00"), 6400),  # Friday
        (at(5, "12:00"), 0),  # Saturday
        (at(6, "12:00"), 0),  # Sunday
    ],
)
def test_window_edges(when: datetime, limit: int) -> None:
    assert limit_at(OFFICE, when) == limit


NIGHT = bw([win(["Fri"], "22:00", "06:00", 100)], default=5000)


@pytest.mark.parametrize(
    ("when", "limit"),
    [
        (at(4, "21:59"), 5000),
        (at(4, "22:00"), 100),
        (at(4, "23:59"), 100),
        (at(5, "00:00"), 100),  # Saturday morning belongs to Friday's window
        (at(5, "05:59"), 100),
        (at(5, "06:00"), 5000),
        (at(3, "23:00"), 5000),  # Thursday night: not listed
        (at(4, "03:00"), 5000),  # Friday morning: that would be Thursday's window
    ],
)
def test_window_crossing_midnight(when: datetime, limit: int) -> None:
    assert limit_at(NIGHT, when) == limit


def test_sunday_window_wraps_into_monday() -> None:
    sched = bw([win(["Sun"], "23:00", "01:00", 7)], default=1)
    assert limit_at(sched, at(6, "23:30")) == 7
    assert limit_at(sched, at(0, "00:59")) == 7  # Monday of the same week, by wrap
    assert limit_at(sched, at(7, "00:30")) == 7  # and the next Monday
    assert limit_at(sched, at(0, "01:00")) == 1


def test_equal_start_and_end_is_a_full_day_from_start() -> None:
    sched = bw([win(["Wed"], "12:00", "12:00", 3)], default=1)
    assert limit_at(sched, at(2, "11:59")) == 1
    assert limit_at(sched, at(2, "12:00")) == 3
    assert limit_at(sched, at(3, "11:59")) == 3
    assert limit_at(sched, at(3, "12:00")) == 1


def test_first_matching_window_wins() -> None:
    sched = bw(
        [win(["Mon"], "10:00", "11:00", 1), win(["Mon"], "08:00", "18:00", 2)],
        default=3,
    )
    assert limit_at(sched, at(0, "10:30")) == 1
    assert limit_at(sched, at(0, "09:00")) == 2
    assert limit_at(sched, at(0, "19:00")) == 3


def test_window_with_zero_is_unlimited_inside_a_limited_default() -> None:
    sched = bw([win(["Sat", "Sun"], "00:00", "00:00", 0)], default=800)
    assert limit_at(sched, at(5, "10:00")) == 0
    assert limit_at(sched, at(0, "10:00")) == 800


def test_time_zone_conversion() -> None:
    berlin_office = bw([win(WORKDAYS, "08:00", "18:00", 6400)], tz="Europe/Berlin")
    # 07:30 UTC on Monday 30 Nov is 08:30 CET.
    assert limit_at(berlin_office, at(0, "07:30")) == 6400
    assert limit_at(berlin_office, at(0, "06:59")) == 0
    assert limit_at(berlin_office, at(0, "17:00")) == 0  # 18:00 CET
    # The same instant expressed in another zone gives the same answer.
    tokyo = at(0, "07:30").astimezone(ZoneInfo("Asia/Tokyo"))
    assert limit_at(berlin_office, tokyo) == 6400
    new_york = bw([win(["Sun"], "22:00", "23:00", 9)], tz="America/New_York")
    # Monday 03:30 UTC is Sunday 22:30 in New York: the local weekday decides.
    assert limit_at(new_york, at(0, "03:30")) == 9


@pytest.mark.parametrize(
    ("utc", "limit"),
    [
        # Spring forward: Sunday 29 March 2026, 02:00 CET -> 03:00 CEST.
        (datetime(2026, 3, 27, 7, 0, tzinfo=UTC), 6400),  # Fri 08:00 CET
        (datetime(2026, 3, 27, 6, 59, tzinfo=UTC), 0),
        (datetime(2026, 3, 30, 6, 0, tzinfo=UTC), 6400),  # Mon 08:00 CEST
        (datetime(2026, 3, 30, 5, 59, tzinfo=UTC), 0),
        (datetime(2026, 3, 30, 16, 0, tzinfo=UTC), 0),  # Mon 18:00 CEST
        # Fall back: Sunday 25 October 2026, 03:00 CEST -> 02:00 CET.
        (datetime(2026, 10, 23, 6, 0, tzinfo=UTC), 6400),  # Fri 08:00 CEST
        (datetime(2026, 10, 26, 6, 59, tzinfo=UTC), 0),  # Mon 07:59 CET
        (datetime(2026, 10, 26, 7, 0, tzinfo=UTC), 6400),  # Mon 08:00 CET
    ],
)
def test_dst_changes_follow_wall_clock(utc: datetime, limit: int) -> None:
    sched = bw([win(WORKDAYS, "08:00", "18:00", 6400)], tz="Europe/Berlin")
    assert limit_at(sched, utc) == limit


def test_dst_night_window_in_both_transitions() -> None:
    sched = bw([win(["Sat", "Sun"], "01:00", "04:00", 50)], default=0, tz="Europe/Berlin")
    # 02:30 local does not exist on 29 March; 00:30 UTC is 01:30 CET, 01:30 UTC is 03:30 CEST.
    assert limit_at(sched, datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == 50
    assert limit_at(sched, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)) == 50
    assert limit_at(sched, datetime(2026, 3, 29, 2, 0, tzinfo=UTC)) == 0  # 04:00 CEST
    # 25 October: 02:30 local happens twice; both are inside, 03:00 CET (02:00 UTC) is too.
    assert limit_at(sched, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == 50  # 02:30 CEST
    assert limit_at(sched, datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == 50  # 02:30 CET
    assert limit_at(sched, datetime(2026, 10, 25, 3, 0, tzinfo=UTC)) == 0  # 04:00 CET


def test_naive_datetime_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        limit_at(OFFICE, datetime(2026, 1, 1))


def test_no_windows_means_default() -> None:
    assert limit_at(bw([], default=123), at(2, "12:00")) == 123
    assert rclone_timetable(bw([], default=123)) == "123K"
    assert rclone_timetable(bw([], default=0)) == "off"


def test_windows_equal_to_default_collapse_to_a_plain_rate() -> None:
    assert rclone_timetable(bw([win(["Mon"], "08:00", "09:00", 5)], default=5)) == "5K"


# --- validation -------------------------------------------------------------------------


def test_valid_schedule_has_no_errors() -> None:
    assert validate_windows(OFFICE) == []
    assert validate_windows(NIGHT) == []


@pytest.mark.parametrize(
    ("windows", "tz", "fragment"),
    [
        ([win(["Mon"], "8:00", "18:00", 1)], "UTC", "start '8:00'"),
        ([win(["Mon"], "08:00", "24:00", 1)], "UTC", "end '24:00'"),
        ([win(["Mon"], "08:60", "09:00", 1)], "UTC", "start '08:60'"),
        ([win(["Mon"], "0800", "09:00", 1)], "UTC", "start '0800'"),
        ([win(["Monday"], "08:00", "09:00", 1)], "UTC", "unknown day 'Monday'"),
        ([win(["mon"], "08:00", "09:00", 1)], "UTC", "unknown day 'mon'"),
        ([win([], "08:00", "09:00", 1)], "UTC", "days must not be empty"),
        ([], "Mars/Olympus", "unknown time zone"),
    ],
)
def test_validation_errors(windows: list[dict[str, Any]], tz: str, fragment: str) -> None:
    sched = bw(windows, tz=tz)
    errors = validate_windows(sched)
    assert any(fragment in e for e in errors), errors
    with pytest.raises(ValueError):
        limit_at(sched, at(0, "08:30"))
    with pytest.raises(ValueError):
        rclone_timetable(sched)


def test_validation_names_the_window() -> None:
    errors = validate_windows(bw([win(["Mon"], "08:00", "09:00", 1), win(["Xyz"], "a", "b", 1)]))
    assert errors and all(e.startswith("window 2:") for e in errors)
    assert len(errors) == 3


# --- rclone timetable ---------------------------------------------------------------------

_RCLONE_WEEKDAY = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_ENTRY = re.compile(r"([A-Za-z]{3})-([01]\d|2[0-3]):([0-5]\d),(off|\d+K)")


def parse_timetable(text: str) -> list[tuple[int, int]] | int:
    """Minimal model of rclone's parser: [(Sun-based day*10000 + HHMM, KiB/s)] or a rate."""
    if " " not in text and "," not in text:
        return 0 if text == "off" else int(text.removesuffix("K"))
    slots = []
    for token in text.split(" "):
        match = _ENTRY.fullmatch(token)
        assert match, f"rclone would reject {token!r}"
        day, hh, mm, rate = match.groups()
        kibps = 0 if rate == "off" else int(rate[:-1])
        slots.append((_RCLONE_WEEKDAY[day.lower()] * 10000 + int(hh) * 100 + int(mm), kibps))
    return slots


def rclone_limit(slots: list[tuple[int, int]] | int, local: datetime) -> int:
    """rclone's LimitAt: the most recent slot at or before now, else the LAST slot listed."""
    if isinstance(slots, int):
        return slots
    now = ((local.weekday() + 1) % 7) * 10000 + local.hour * 100 + local.minute
    chosen = slots[-1][1]
    best: int | None = None
    for key, kibps in slots:
        if key <= now and (best is None or key >= best):
            best, chosen = key, kibps
    return chosen


def assert_timetable_matches_every_minute(sched: Bandwidth) -> None:
    slots = parse_timetable(rclone_timetable(sched))
    zone = ZoneInfo(sched.time_zone)
    for minute in range(MINUTES_PER_WEEK):
        local = datetime(2026, 11, 30, tzinfo=zone) + timedelta(minutes=minute)  # naive add
        expected = limit_at(sched, local)
        assert rclone_limit(slots, local) == expected, (local, rclone_timetable(sched))


def test_office_timetable_text() -> None:
    assert rclone_timetable(OFFICE) == (
        "Sun-00:00,off Mon-08:00,6400K Mon-18:00,off Tue-08:00,6400K Tue-18:00,off "
        "Wed-08:00,6400K Wed-18:00,off Thu-08:00,6400K Thu-18:00,off "
        "Fri-08:00,6400K Fri-18:00,off"
    )


@pytest.mark.parametrize(
    "sched",
    [
        OFFICE,
        NIGHT,
        bw([win(["Sun"], "23:00", "01:00", 7)], default=1),
        bw([win(["Sat"], "00:00", "00:00", 9)], default=0, tz="Europe/Berlin"),
        bw(
            [win(["Mon"], "10:00", "11:00", 1), win(WORKDAYS, "08:00", "18:00", 2)],
            default=3,
            tz="America/New_York",
        ),
    ],
)
def test_timetable_equals_limit_at_every_minute(sched: Bandwidth) -> None:
    assert_timetable_matches_every_minute(sched)


_hhmm = st.builds("{:02d}:{:02d}".format, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 59]))
_window = st.builds(
    win,
    st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True),
    _hhmm,
    _hhmm,
    st.sampled_from([0, 1, 100, 6400]),
)
_schedule = st.builds(
    bw,
    st.lists(_window, max_size=4),
    default=st.sampled_from([0, 100, 6400]),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Chatham"]),
)


@settings(max_examples=15, deadline=None)
@given(_schedule)
def test_timetable_equals_limit_at_property(sched: Bandwidth) -> None:
    assert_timetable_matches_every_minute(sched)


def oracle(sched: Bandwidth, when: datetime) -> int:
    """Straight from the documented rule, independent of the implementation."""
    local = when.astimezone(ZoneInfo(sched.time_zone))
    now = local.hour * 60 + local.minute
    for window in sched.windows:
        sh, sm = map(int, window.start.split(":"))
        eh, em = map(int, window.end.split(":"))
        start, end = sh * 60 + sm, eh * 60 + em
        for day in (DAYS.index(d) for d in window.days):
            today = local.weekday() == day
            if start < end and today and start <= now < end:
                return window.limit_kibps
            crosses = end <= start
            tomorrow = local.weekday() == (day + 1) % 7
            if crosses and ((today and now >= start) or (tomorrow and now < end)):
                return window.limit_kibps
    return sched.default_kibps


@settings(max_examples=300, deadline=None)
@given(
    _schedule,
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_limit_at_matches_the_documented_rule(sched: Bandwidth, when: datetime) -> None:
    assert limit_at(sched, when) == oracle(sched, when)


# --- against the real rclone -------------------------------------------------------------


def _rclone() -> str | None:
    venv = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "rclone"
    return str(venv) if venv.exists() else shutil.which("rclone")


def _run_rclone(
    binary: str, timetable: str, tz: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(exist_ok=True)
    (src / "f").write_bytes(b"x")
    return subprocess.run(
        [
            binary,
            "copy",
            "--bwlimit",
            timetable,
            "-vv",
            "--config",
            "/dev/null",
            str(src),
            str(dst),
        ],
        env={"TZ": tz, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(_rclone() is None, reason="rclone not installed")
@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_real_rclone_picks_the_limit_limit_at_predicts(tz: str, tmp_path: Path) -> None:
    binary = _rclone()
    assert binary is not None
    local_now = datetime.now(UTC).astimezone(ZoneInfo(tz))
    # A window from 30 minutes ago to 30 minutes ahead, listed on the day it starts,
    # so a minute boundary during the test cannot change the answer.
    start = local_now - timedelta(minutes=30)
    end = local_now + timedelta(minutes=30)
    sched = bw(
        [
            win([DAYS[start.weekday()]], f"{start:%H:%M}", f"{end:%H:%M}", 321),
            win(WORKDAYS, "08:00", "18:00", 6400),
        ],
        default=77,
        tz=tz,
    )
    assert limit_at(sched, datetime.now(UTC)) == 321
    result = _run_rclone(binary, rclone_timetable(sched), tz, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Starting bandwidth limiter at 321Ki Byte/s" in result.stderr, result.stderr


@pytest.mark.skipif(_rclone() is None, reason="rclone not installed")
def test_real_rclone_accepts_a_busy_timetable(tmp_path: Path) -> None:
    binary = _rclone()
    assert binary is not None
    sched = bw(
        [win([d], f"{h:02d}:00", f"{h:02d}:30", h + 1) for d in DAYS for h in range(0, 24, 3)],
        default=0,
        tz="Europe/Berlin",
    )
    timetable = rclone_timetable(sched)
    assert timetable.count(" ") > 100
    before = limit_at(sched, datetime.now(UTC))
    result = _run_rclone(binary, timetable, "Europe/Berlin", tmp_path)
    after = limit_at(sched, datetime.now(UTC))
    assert result.returncode == 0, result.stderr
    if before == after:  # no slot boundary passed while rclone started
        started = f"Starting bandwidth limiter at {before}Ki Byte/s" in result.stderr
        assert started is (before != 0), result.stderr


def test_next_change_is_the_first_minute_the_limit_differs() -> None:
    from nassync.transports.bandwidth import next_change

    bw = Bandwidth.model_validate({"timeZone": "Europe/Berlin", "defaultKiBps": 0, "windows": [
        {"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "start": "08:00", "end": "18:00", "limitKiBps": 6400}]})
    monday_10_berlin = datetime(2026, 11, 30, 9, 0, 30, tzinfo=UTC)
    assert next_change(bw, monday_10_berlin) == datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 18:00 Berlin
    friday_evening = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
    assert next_change(bw, friday_evening) == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # Monday 08:00 Berlin
    assert next_change(Bandwidth.model_validate({"defaultKiBps": 100}), monday_10_berlin) is None


def test_next_change_across_a_dst_switch() -> None:
    from nassync.transports.bandwidth import next_change

    bw = Bandwidth.model_validate({"timeZone": "Europe/Berlin", "windows": [
        {"days": ["Sun"], "start": "04:00", "end": "05:00", "limitKiBps": 10}]})
    # 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST; 04:00 CEST is 02:00 UTC.
    before = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    change = next_change(bw, before)
    assert change == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    assert limit_at(bw, change) == 10
