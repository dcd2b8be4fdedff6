"""
The dashboard: a page for people (C{/dashboard/}) and the small JSON API it reads
(C{/api/fleet}, C{/api/day}), served by the same site as everything else.

L{dashboard_pages} makes the resources that C{shellylog.tap} mounts at the site's top.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, tzinfo
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import Request

from shellylog.dashboard.day import DayResource
from shellylog.dashboard.fleet import FleetResource
from shellylog.dashboard.page import dashboard_folder


def in_threads(reactor: object) -> Callable[..., Deferred[Any]]:
    """
    How C{/api/day} reads the CSV files: in C{reactor}'s thread pool, never on the
    reactor's thread; on a reactor without threads (a test's L{Clock}), at once.
    """
    if not IReactorThreads.providedBy(reactor):
        return maybeDeferred
    threads: IReactorThreads = reactor

    def run(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        return deferToThreadPool(threads, threads.getThreadPool(), f, *args, **kwargs)

    return run


class ApiFolder(Resource):
    """C{/api}: its documents only; the folder itself is 404 (not Twisted's 405)."""

    def render(self, request: Request) -> bytes:
        return NoResource().render(request)  # type: ignore[no-any-return]


def dashboard_pages(
    fleet: Callable[[], dict[str, Any]],
    clock: IReactorTime,
    csv_path: str | None,
    zone: tzinfo,
) -> dict[bytes, IResource]:
    """
    The dashboard's resources by their name at the site's top: C{dashboard} (the page and
    its assets) and C{api}, whose C{fleet} serves the document C{fleet} returns
    (L{shellylog.dashboard.fleet.fleet_document}, at most once a second on C{clock}) and
    whose C{day} serves a channel's day from the CSV file C{csv_path} and its rotated
    files, in C{zone} (L{DayResource}, read in C{clock}'s threads); without a CSV file
    (C{--csv none}) there is no C{day}: the database is for Grafana's graphs.
    """

    def today() -> date:
        return datetime.fromtimestamp(clock.seconds(), zone).date()

    api = ApiFolder()
    api.putChild(b"fleet", FleetResource(fleet, clock))
    if csv_path is not None:
        api.putChild(b"day", DayResource(csv_path, zone, today, run=in_threads(clock)))
    return {b"dashboard": dashboard_folder(), b"api": api}
