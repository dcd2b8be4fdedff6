"""
The one HTTP site: health at C{/}, the devices' WebSocket at C{/ws} and C{/ws/}.
"""

from __future__ import annotations

from collections.abc import Callable

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request, Site


class HealthResource(Resource):
    """
    C{GET /}: C{ok}, the number of connected devices and the rows written since start,
    as plain text, one C{key: value} a line after the first.
    """

    isLeaf = True

    def __init__(self, devices: Callable[[], int], rows_written: Callable[[], int]) -> None:
        super().__init__()
        self._devices = devices
        self._rows_written = rows_written

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        body = f"ok\ndevices: {self._devices()}\nrows_written: {self._rows_written()}\n"
        return body.encode("utf-8")


class DeviceSocketResource(WebSocketResource):
    """
    The WebSocket for devices, at exactly C{/ws} or C{/ws/}. A WebSocketResource is a
    leaf, so without this check C{/ws/anything} would upgrade too.
    """

    def render(self, request: Request) -> bytes | int:
        if request.postpath not in ([], [b""]):
            return NoResource().render(request)  # type: ignore[no-any-return]
        return super().render(request)  # type: ignore[no-any-return]


def build_site(ws_factory: WebSocketServerFactory, health: HealthResource) -> Site:
    """The site: C{/} health, C{/ws} and C{/ws/} devices, everything else 404."""
    root = Resource()
    root.putChild(b"", health)
    root.putChild(b"ws", DeviceSocketResource(ws_factory))
    site = Site(root)
    site.displayTracebacks = False
    return site
