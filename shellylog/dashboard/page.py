"""
C{/dashboard/}: the dashboard's page and its assets (HTML, JavaScript, CSS, the vendored
uPlot chart library), served from the package's C{static} folder.

Only files are served: a folder's listing is 404, and C{/dashboard} itself (without its
slash) is sent to C{dashboard/} with a relative 301, so that the page's relative URLs
resolve below it, behind a reverse proxy's path prefix too. Every answer forbids content
sniffing and carries a strict content security policy (scripts, styles and requests of
the page's own origin only; no inline script), which the page honours.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.web import http
from twisted.web.resource import IResource, NoResource
from twisted.web.server import Request
from twisted.web.static import File, getTypeAndEncoding

#: The folder of the page and its assets, inside the package.
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: The page's content security policy: nothing but its own scripts, styles and API.
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: The content types of the files shipped: set here rather than guessed from the host's
#: C{mimetypes}, which on some systems map C{.js} to C{text/plain} (which a browser
#: refuses to run under C{nosniff}).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}


def set_page_headers(request: Request) -> None:
    """The headers every answer of the dashboard carries: no sniffing, the CSP."""
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
    request.setHeader(b"referrer-policy", b"no-referrer")


class StaticFolder(File):
    """
    The files of a folder, and nothing else: a folder's listing is 404, and the top
    folder asked for without its slash is sent to it (301, relative).
    """

    contentTypes = CONTENT_TYPES
    #: Whether this is the folder mounted (asked for without a slash: redirected).
    top = False

    def directoryListing(self) -> IResource:
        return NoResource()

    def createSimilarFile(self, path: str) -> StaticFolder:
        found: StaticFolder = super().createSimilarFile(path)
        found.top = False
        return found

    def render(self, request: Request) -> Any:
        set_page_headers(request)
        # Revalidated each time (Last-Modified): an upgrade's page is seen at once.
        request.setHeader(b"cache-control", b"no-cache")
        self.restat(False)
        if self.isdir():
            # The top folder as /dashboard: on to /dashboard/. Any other folder is only
            # reached this way without its slash (with it, getChild lists it: 404).
            if not self.top or not request.prepath:
                return NoResource().render(request)
            request.setResponseCode(http.MOVED_PERMANENTLY)
            request.setHeader(b"location", request.prepath[-1] + b"/")
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"moved to " + request.prepath[-1] + b"/\n"
        return super().render(request)

    def render_GET(self, request: Request) -> bytes:
        """
        The file, read whole: the largest (uPlot) is some 50 KB. Twisted's producer for
        files would pull them through the global reactor's cooperator in slices, for
        nothing at this size.
        """
        if not self.isfile():
            return NoResource().render(request)  # type: ignore[no-any-return]
        if self.type is None:
            self.type, self.encoding = getTypeAndEncoding(
                self.basename(), self.contentTypes, self.contentEncodings, self.defaultType)
        try:
            body = self.getContent()
        except OSError:
            return NoResource().render(request)  # type: ignore[no-any-return]
        if request.setLastModified(self.getModificationTime()) is http.CACHED:
            return b""
        request.setHeader(b"content-type", (self.type or self.defaultType).encode("ascii"))
        if self.encoding:
            request.setHeader(b"content-encoding", self.encoding.encode("ascii"))
        request.setHeader(b"content-length", b"%d" % len(body))
        return b"" if request.method == b"HEAD" else body

    render_HEAD = render_GET


def dashboard_folder(path: str = STATIC) -> StaticFolder:
    """The resource of C{/dashboard}: the files of C{path}, C{index.html} for the folder."""
    # uPlot.LICENSE and any other file of no type known: text (File would say HTML).
    folder = StaticFolder(path, defaultType="text/plain; charset=utf-8")
    folder.top = True
    folder.indexNames = ["index.html"]
    return folder
