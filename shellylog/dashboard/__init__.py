"""
The dashboard: a page for people (C{/dashboard/}) and the small JSON API it reads
(C{/api/fleet}, C{/api/day}), served by the same site as everything else.

L{dashboard_pages} makes the resources that C{shellylog.tap} mounts at the site's top.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, tzinfo
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import Request

from shellylog.dashboard.day import DayResource
from shellylog.dashboard.fleet import FleetQuery, FleetResource
from shellylog.dashboard.page import dashboard_folder
from shellylog.threads import RunInThread


class ApiFolder(Resource):
    """C{/api}: its documents only; the folder itself is 404 (not Twisted's 405)."""

    def render(self, request: Request) -> bytes:
        return NoResource().render(request)  # type: ignore[no-any-return]


def dashboard_pages(
    fleet: Callable[[Sequence[str], FleetQuery], dict[str, Any]],
    fleet_ids: Callable[[], Sequence[str]],
    clock: IReactorTime,
    csv_path: str | None,
    zone: tzinfo,
    run: RunInThread,
    rejected: Counter[str],
) -> dict[bytes, IResource]:
    """
    The dashboard's resources by their name at the site's top: C{dashboard} (the page and
    its assets) and C{api}, whose C{fleet} serves the pages C{fleet} returns for the
    sorted device ids C{fleet_ids} returns (L{shellylog.dashboard.fleet.fleet_document}
    and L{shellylog.dashboard.fleet.device_ids}; each at most once a second on C{clock})
    and whose C{day} serves a channel's day from the CSV file C{csv_path} and its rotated
    files, in C{zone} (L{DayResource}, read through C{run}, the web's threads; a request
    refused while they are busy is counted in C{rejected}); without a CSV file
    (C{--csv none}) there is no C{day}: the database is for Grafana's graphs.
    """

    def today() -> date:
        return datetime.fromtimestamp(clock.seconds(), zone).date()

    api = ApiFolder()
    api.putChild(b"fleet", FleetResource(fleet, fleet_ids, clock))
    if csv_path is not None:
        api.putChild(b"day", DayResource(csv_path, zone, today, run, rejected))
    return {b"dashboard": dashboard_folder(), b"api": api}
