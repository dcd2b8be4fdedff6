"""
C{GET /api/fleet}: every device seen since start, connected or not, with the live power
and running state of each channel the server logs, as the dashboard polls it.

L{fleet_document} builds the document from the server's parts (pure: no reactor, no
I/O); L{FleetResource} serves it, built at most once in L{FLEET_MAX_AGE} seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import orjson
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request

from shellylog.channels import ChannelKey, ChannelSelection, channel_name, component_of, family_of
from shellylog.csvlog import minute_timestamp

if TYPE_CHECKING:
    from shellylog.registry import DeviceRegistry
    from shellylog.tracker import ChannelTracker

#: Seconds one C{/api/fleet} document is served for: however many browsers poll, it is
#: built at most once in that time.
FLEET_MAX_AGE = 1.0


_api_names: dict[ChannelKey, str] = {}


def api_name(key: ChannelKey) -> str:
    """
    A channel as the JSON API names it: a switch by its component (C{switch:0}, where the
    CSV cell says C{0}), any other channel by its CSV cell (C{pm1:0}, C{em:0:a}).

    Cached: only keys of channels that are logged come here.
    """
    name = _api_names.get(key)
    if name is None:
        name = component_of(key) if family_of(key) == "switch" else channel_name(key)
        _api_names[key] = name
    return name


def _when(t: float | None, zone: tzinfo) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, zone).isoformat()


def fleet_document(
    *,
    now: float,
    zone: tzinfo,
    tz: str,
    instance: str,
    registry: DeviceRegistry,
    tracker: ChannelTracker,
    selection: ChannelSelection,
) -> dict[str, Any]:
    """
    The C{/api/fleet} document at C{now}: the server's time and date in C{zone} (named
    C{tz}) and its name (C{instance}, C{--instance}), then every device of C{registry} by
    id (connected since when, or else left when), each with the channels of C{selection}
    the tracker knows, in the rows' order (rule 8): the latest power, and whether the
    channel runs and since which minute (L{ChannelTracker.runs}).
    """
    here = datetime.fromtimestamp(now, zone)
    # Most channels share a few minutes (this one, the last): each is written once.
    minutes: dict[int, str] = {}

    def minute(m: int | None) -> str | None:
        if m is None:
            return None
        text = minutes.get(m)
        if text is None:
            text = minutes[m] = minute_timestamp(m, zone)
        return text

    devices = []
    for device_id, record in sorted(registry.records.items()):
        # runs() has only the channels with a reading; view() every known one, sorted.
        run_since = {key: first for key, _, first in tracker.runs(device_id)}
        channels = []
        for key, view in tracker.view(device_id).items():
            if not selection.selects(key):
                continue
            latest = view.latest
            first = run_since.get(key)
            channels.append({
                "channel": api_name(key),
                "apower_W": None if latest is None else latest.apower,
                "running": first is not None,
                "run_since": minute(first),
                "last_minute_written": minute(view.last_written),
            })
        devices.append({
            "device_id": device_id,
            "connected": record.connected,
            # The registry keeps when the last connection began after it closed: that is
            # no "connected since" any more.
            "connected_since": _when(record.connected_since, zone) if record.connected else None,
            "left_at": None if record.connected else _when(record.left_at, zone),
            "last_frame_at": _when(record.last_frame_at, zone),
            "channels": channels,
        })
    return {
        "now": here.isoformat(),
        "today": here.date().isoformat(),
        "tz": tz,
        "instance": instance,
        "devices": devices,
    }


class FleetResource(Resource):
    """
    C{GET /api/fleet}: the document C{document} returns (see L{fleet_document}), as JSON.
    It is built and encoded at most once in C{max_age} seconds on C{clock}: the dashboard
    polls every two seconds, and any number of browsers may be open.
    """

    isLeaf = True

    def __init__(self, document: Callable[[], dict[str, Any]], clock: IReactorTime,
                 max_age: float = FLEET_MAX_AGE) -> None:
        super().__init__()
        self._document = document
        self._clock = clock
        self._max_age = max_age
        self._body: bytes | None = None
        self._built_at = 0.0

    def render_GET(self, request: Request) -> bytes:
        if request.postpath not in ([], [b""]):
            return NoResource().render(request)  # type: ignore[no-any-return]
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        now = self._clock.seconds()
        # A clock that went back is no reason to serve an old document for ever.
        if self._body is None or not 0 <= now - self._built_at < self._max_age:
            self._body = orjson.dumps(self._document()) + b"\n"
            self._built_at = now
        return self._body
