"""
The query arguments of the JSON pages (C{/status}, C{/api/fleet}, C{/api/day}): each read
once, checked, and refused with a message that says which and why (answered 400).
"""

from __future__ import annotations

from twisted.web.iweb import IRequest


class BadQueryError(ValueError):
    """A query argument that is missing or wrong; the message says which and why."""


def text_arg(request: IRequest, name: str) -> str | None:
    """
    The query argument C{name} (C{None} if absent).

    @raise BadQueryError: if it is given more than once or is not UTF-8.
    """
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    if len(values) > 1:
        raise BadQueryError(f"{name}: given {len(values)} times, expected once")
    value: bytes = values[0]
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadQueryError(f"{name}: not UTF-8 text") from None


def whole_arg(request: IRequest, name: str, default: int, minimum: int,
              maximum: int | None) -> int:
    """
    The query argument C{name}, a whole number from C{minimum} to C{maximum} (C{None}: no
    bound); C{default} if absent.

    @raise BadQueryError: if it is anything else.
    """
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return default
    text = values[0].decode("latin-1")
    top = "" if maximum is None else f" to {maximum}"
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not (
        minimum <= int(text) and (maximum is None or int(text) <= maximum)
    ):
        raise BadQueryError(f"{name}: a whole number from {minimum}{top}, "
                            f"got {text[:20]!a}")
    return int(text)


def bad_query_answer(request: IRequest, error: BadQueryError) -> bytes:
    """The answer to a bad query: 400, and the message, in plain text."""
    request.setResponseCode(400)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return f"{error}\n".encode()
