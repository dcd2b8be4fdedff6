"""
The dashboard: a page for people (C{/dashboard/}) and the small JSON API it reads
(C{/api/fleet}, C{/api/day}), served by the same site as everything else.

L{dashboard_pages} makes the resources that C{shellylog.tap} mounts at the site's top.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, Resource

from shellylog.dashboard.fleet import FleetResource
from shellylog.dashboard.page import dashboard_folder


def dashboard_pages(
    fleet: Callable[[], dict[str, Any]],
    clock: IReactorTime,
    day: IResource | None = None,
) -> dict[bytes, IResource]:
    """
    The dashboard's resources by their name at the site's top: C{dashboard} (the page and
    its assets) and C{api}, whose C{fleet} serves the document C{fleet} returns
    (L{shellylog.dashboard.fleet.fleet_document}, at most once a second on C{clock}) and
    whose C{day} is C{day} (a channel's day from the CSV file), if given.
    """
    api = Resource()
    api.putChild(b"fleet", FleetResource(fleet, clock))
    if day is not None:
        api.putChild(b"day", day)
    return {b"dashboard": dashboard_folder(), b"api": api}
