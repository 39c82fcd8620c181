"""Numbers as a lab admin reads them in messages, status columns and the plugin."""

from __future__ import annotations


def human_bytes(n: int) -> str:
    """Binary units like `kubectl top`/`df -h`: `512 B`, `1.5 KiB`, `20.0 GiB`."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def human_seconds(seconds: float) -> str:
    """A short human duration with at most two units: `45s`, `2m`, `1h30m`, `2d3h`."""
    total = max(0, round(seconds))
    for unit, size, sub_unit, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if total >= size:
            count, rest = divmod(total, size)
            sub = rest // sub_size
            return f"{count}{unit}{sub}{sub_unit}" if sub else f"{count}{unit}"
    minutes, secs = divmod(total, 60)
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"
