"""
The WebSocket opening handshake, checked before Autobahn sees it (RFC 6455, section 4.2.1).

Pure: a request's method, HTTP version and headers in, a L{Refusal} (or C{None}) out. The
site answers a refusal at once with a clear HTTP error, so a broken handshake never waits
for a timeout, and what is accepted here is what Autobahn accepts too.

Browsers send C{Origin} with every WebSocket handshake; Shelly devices and WebSocket
libraries (Python's C{websockets}, Node's C{ws}) send none. So a handshake with an C{Origin}
comes from a web page, which any browser on the LAN may have open, and it is refused unless
its origin is one of the admitted ones (C{--allow-origin}).
"""

from __future__ import annotations

import binascii
from base64 import b64decode

from attrs import frozen
from twisted.web.http_headers import Headers

#: The one WebSocket version spoken (RFC 6455); devices and every current client send it.
VERSION = b"13"


@frozen
class Refusal:
    """
    Why a handshake is refused, as the HTTP answer says it.

    @ivar code: the HTTP status code.
    @ivar reason: what was wrong, one line of ASCII (the answer's body and log line).
    @ivar headers: extra response headers.
    @ivar counted: the reason it is counted under (C{rejected}, C{/metrics}).
    @ivar origin: the refused C{Origin} as sent (for the log), if that was the reason.
    """

    code: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    counted: str = "bad_handshake"
    origin: bytes | None = None


def _tokens(headers: Headers, name: bytes) -> set[bytes]:
    """The comma-separated tokens of every C{name} header, lower case."""
    values = headers.getRawHeaders(name) or []
    return {token.strip().lower() for value in values for token in value.split(b",")}


def _single(headers: Headers, name: bytes) -> bytes | None:
    """The value of C{name} if it is given exactly once, else C{None}."""
    values = headers.getRawHeaders(name) or []
    return values[0].strip() if len(values) == 1 else None


def _is_key(value: bytes) -> bool:
    """Whether C{value} is base64 of 16 bytes, as a Sec-WebSocket-Key must be."""
    try:
        return len(b64decode(value, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def origin_key(origin: str) -> bytes:
    """
    An origin as compared: ASCII lower case (browsers send scheme and host in lower case;
    RFC 6454 compares them without regard to case), as bytes.
    """
    return origin.strip().lower().encode("ascii")


def check_handshake(method: bytes, version: bytes, headers: Headers,
                    allowed_origins: frozenset[bytes] = frozenset()) -> Refusal | None:
    """
    C{None} if this request (C{method}, C{version} such as C{b"HTTP/1.1"}, C{headers}) is
    a WebSocket opening handshake shellylog answers with C{101}; else why not.

    A handshake with an C{Origin} header (a web page's) is refused with 403 unless it
    gives exactly one origin and that one is in C{allowed_origins} (each made by
    L{origin_key}; C{null} is admitted only if it is among them).
    """
    if method != b"GET":
        return Refusal(405, "a WebSocket handshake is a GET", ((b"Allow", b"GET"),))
    if version != b"HTTP/1.1":
        return Refusal(400, "a WebSocket handshake needs HTTP/1.1")
    if _single(headers, b"host") is None:
        return Refusal(400, "a Host header, exactly one, is required")
    if b"websocket" not in _tokens(headers, b"upgrade"):
        return Refusal(400, "this is a WebSocket endpoint: Upgrade: websocket is required")
    if b"upgrade" not in _tokens(headers, b"connection"):
        return Refusal(400, "Connection: Upgrade is required")
    if _single(headers, b"sec-websocket-version") != VERSION:
        return Refusal(
            426,
            f"Sec-WebSocket-Version {VERSION.decode()} is required",
            ((b"Sec-WebSocket-Version", VERSION),),
        )
    key = _single(headers, b"sec-websocket-key")
    if key is None or not _is_key(key):
        return Refusal(400, "Sec-WebSocket-Key, exactly one, base64 of 16 bytes, is required")
    origins = headers.getRawHeaders(b"origin")
    if origins is not None:
        # Checked last: what a page sends is otherwise a legal handshake, and the answer
        # should name the one thing that keeps it out.
        if len(origins) != 1 or origins[0].strip().lower() not in allowed_origins:
            return Refusal(403, "this Origin is not allowed (see --allow-origin)",
                           counted="bad_origin", origin=b", ".join(origins))
    return None
