"""The transport catalog: which transport serves which kind of destination.

A destination type (the `type` of the mover contract's destination model, the
field name under `spec.destination` in the CRD) maps to one Transport class.
Adding a transport is its module, its destination models (api/target.py for
the operator side, api/mover_io.py for the pod side) and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nassync.api.mover_io import Destination
from nassync.transports.base import Transport
from nassync.transports.rclone import RcloneTransport
from nassync.transports.rsync import RsyncTransport
from nassync.transports.volume import VolumeTransport

TRANSPORTS: dict[str, Callable[[Any], Transport]] = {
    "rclone": RcloneTransport,
    "rsync": RsyncTransport,
    "volume": VolumeTransport,
}


def transport_for(destination: Destination) -> Transport:
    """The transport that moves data to `destination`."""
    try:
        make = TRANSPORTS[destination.type]
    except KeyError:
        raise TypeError(f"no transport for destination type {destination.type!r}") from None
    return make(destination)
