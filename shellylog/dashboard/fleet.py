"""
C{GET /api/fleet}: the devices seen since start, connected or not, with the live power
and running state of each channel the server logs, as the dashboard polls it, a page at a
time (C{offset}, C{limit}) and filtered by id (C{q}).

L{fleet_document} builds a page of the document from the server's parts (pure: no
reactor, no I/O), building only the page's devices; L{FleetResource} serves it, each page
built at most once in L{FLEET_MAX_AGE} seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import orjson
from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request

from shellylog.channels import ChannelKey, ChannelSelection, channel_name, component_of, family_of
from shellylog.csvlog import minute_timestamp
from shellylog.pagecache import PageCache
from shellylog.queryargs import BadQueryError, bad_query_answer, text_arg, whole_arg

if TYPE_CHECKING:
    from shellylog.registry import DeviceRegistry
    from shellylog.tracker import ChannelTracker

#: Seconds one C{/api/fleet} page is served for: however many browsers poll, it is
#: built at most once in that time (and the sorted ids of the fleet taken once).
FLEET_MAX_AGE = 1.0
#: Devices in a page of C{/api/fleet} when C{?limit=} is not given.
FLEET_PAGE_SIZE = 200
#: The most devices C{?limit=} may ask for.
FLEET_MAX_LIMIT = 1000
#: The longest C{?q=}, in characters: a device id is shorter.
FLEET_MAX_Q = 64
# Pages kept encoded within FLEET_MAX_AGE (by offset, limit and q).
_PAGES_KEPT = 16


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


def device_ids(registry: DeviceRegistry) -> list[str]:
    """Every device C{registry} knows, sorted by id: the order of C{/api/fleet}."""
    return sorted(registry.records)


def matching(ids: Sequence[str], q: str) -> Sequence[str]:
    """The ids of C{ids} that contain C{q}, case-insensitively, in their order (all: C{q} empty)."""
    if not q:
        return ids
    folded = q.casefold()
    return [i for i in ids if folded in i.casefold()]


@frozen
class FleetQuery:
    """Which page of C{/api/fleet} a request asks for (see L{parse_fleet_query})."""

    #: Devices of those matching C{q} skipped, counted from 0.
    offset: int = 0
    #: Devices in the page at most.
    limit: int = FLEET_PAGE_SIZE
    #: Text the ids must contain, case-insensitively; empty: every device.
    q: str = ""


def parse_fleet_query(request: Request) -> FleetQuery:
    """
    The page a request asks for: C{offset} (default 0), C{limit} (1 to
    L{FLEET_MAX_LIMIT}, default L{FLEET_PAGE_SIZE}), parsed as C{/status} parses its own,
    and C{q} (at most L{FLEET_MAX_Q} characters; once, UTF-8), as C{/api/day} parses its
    arguments.

    @raise BadQueryError: the message says which argument is wrong and why.
    """
    offset = whole_arg(request, "offset", 0, 0, None)
    limit = whole_arg(request, "limit", FLEET_PAGE_SIZE, 1, FLEET_MAX_LIMIT)
    q = text_arg(request, "q") or ""
    if len(q) > FLEET_MAX_Q:
        raise BadQueryError(f"q: at most {FLEET_MAX_Q} characters, got {len(q)}")
    return FleetQuery(offset, limit, q)


def fleet_document(
    *,
    now: float,
    zone: tzinfo,
    tz: str,
    instance: str,
    registry: DeviceRegistry,
    tracker: ChannelTracker,
    selection: ChannelSelection,
    query: FleetQuery = FleetQuery(),
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """
    A page of the C{/api/fleet} document at C{now}: the server's time and date in C{zone}
    (named C{tz}) and its name (C{instance}, C{--instance}), then the devices of
    C{query}'s page among those of C{ids} (by default every device of C{registry}, sorted
    by id: L{device_ids}) whose id contains
    C{query.q}: each connected since when (or else left when), with the channels of
    C{selection} the tracker knows, in the rows' order (rule 8): the latest power, and
    whether the channel runs and since which minute (L{ChannelTracker.runs}). Then where
    the page is (C{page}, as L{shellylog.statuspage.status_page} says it) and how many
    devices there are in all (C{devices_known}).

    Only the page's devices are built: the cost is that of C{query.limit} devices (and of
    a look at each id when C{q} is given), not of the fleet. An id of C{ids} that
    C{registry} has forgotten since (C{ids} may be a second old) is left out.
    """
    if ids is None:
        ids = device_ids(registry)
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

    shown = matching(ids, query.q)
    page = shown[query.offset:query.offset + query.limit]
    after = query.offset + len(page)
    devices = []
    for device_id in page:
        record = registry.records.get(device_id)
        if record is None:
            continue
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
        # The keys of /status's page; "next" is the offset to ask for (q and limit as
        # in this one), not a URL: the page adds q.
        "page": {
            "offset": query.offset,
            "limit": query.limit,
            "total": len(shown),
            "next": after if after < len(shown) else None,
        },
        "devices_known": len(ids),
    }


class FleetResource(Resource):
    """
    C{GET /api/fleet?offset=N&limit=M&q=TEXT}: a page of the fleet (see
    L{fleet_document}), as JSON; a bad query is 400, in plain text.

    The sorted device ids (C{ids}) are taken at most once in C{max_age} seconds on
    C{clock}, and each page asked for (C{document}, from those ids) is built and encoded
    once in that time (the last L{_PAGES_KEPT} pages asked): the dashboard polls every
    two seconds, and any number of browsers may be open, each on its own page or filter.
    """

    isLeaf = True

    def __init__(self, document: Callable[[Sequence[str], FleetQuery], dict[str, Any]],
                 ids: Callable[[], Sequence[str]], clock: IReactorTime,
                 max_age: float = FLEET_MAX_AGE) -> None:
        super().__init__()
        self._document = document
        self._pages: PageCache[Sequence[str], FleetQuery] = PageCache(
            ids, clock, max_age, _PAGES_KEPT)

    def render_GET(self, request: Request) -> bytes:
        if request.postpath not in ([], [b""]):
            return NoResource().render(request)  # type: ignore[no-any-return]
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        try:
            query = parse_fleet_query(request)
        except BadQueryError as e:
            return bad_query_answer(request, e)
        request.setHeader(b"content-type", b"application/json")
        return self._pages.answer(query, self._encoded)

    def _encoded(self, known: Sequence[str], query: FleetQuery) -> bytes:
        return orjson.dumps(self._document(known, query)) + b"\n"
