"""
Autobahn's debug dumps, formatted only when a log observer reads them.

Autobahn formats a dump of its settings (C{pformat}) and highlighted names (C{hltype})
for debug log lines on every connection, even when nothing records debug lines: about
40% of the CPU a WebSocket handshake costs it. L{defer_debug_formatting} makes those two
helpers of C{autobahn.websocket.protocol} return objects that format themselves when
turned into text, so a line nobody reads costs nothing and a line someone reads is the
same as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import autobahn.websocket.protocol as _autobahn_protocol


class _Deferred:
    """Text made by C{function(value)} when it is first needed."""

    __slots__ = ("_function", "_text", "_value")

    def __init__(self, function: Callable[[Any], str], value: object) -> None:
        self._function = function
        self._value = value
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            self._text = self._function(self._value)
        return self._text

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return str(self)


def _deferring(function: Callable[[Any], str]) -> Callable[[Any], _Deferred]:
    def deferred(value: object) -> _Deferred:
        return _Deferred(function, value)

    deferred.__wrapped__ = function  # type: ignore[attr-defined]
    return deferred


def defer_debug_formatting() -> None:
    """Make Autobahn's per-connection debug formatting lazy (once per process)."""
    for name in ("pformat", "hltype"):
        function = getattr(_autobahn_protocol, name, None)
        if function is not None and not hasattr(function, "__wrapped__"):
            setattr(_autobahn_protocol, name, _deferring(function))
