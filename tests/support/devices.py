"""
A device on the real reactor: L{FakeDevice}, the device end of the outbound WebSocket (an
Autobahn client), and the two reports it sends in the end-to-end, nginx, systemd, TLS and
C{/metrics} tests, with the CSV row they make.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet.defer import Deferred

DEVICE = "shellyplus1pm-aabbccddeeff"
HEADER = "timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh"
# The row's values: apower from the partial update, the rest from the full status.
ROW_VALUES = f"{DEVICE},0,460.5,230.1,1.9,100.0"

FULL_STATUS: dict[str, Any] = {
    "src": DEVICE,
    "dst": "ws",
    "method": "NotifyFullStatus",
    "params": {
        "ts": 5.01,
        "switch:0": {
            "id": 0,
            "source": "init",
            "output": True,
            "apower": 450,
            "voltage": 230.1,
            "current": 1.9,
            "aenergy": {"total": 100.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1764403200},
            "temperature": {"tC": 41.2, "tF": 106.2},
        },
        "sys": {"mac": "AABBCCDDEEFF", "unixtime": None, "uptime": 4},
        "ws": {"connected": True},
    },
}
PARTIAL_STATUS: dict[str, Any] = {
    "src": DEVICE,
    "dst": "ws",
    "method": "NotifyStatus",
    "params": {"ts": 6.2, "switch:0": {"id": 0, "apower": 460.5}},
}


class FakeDevice(WebSocketClientProtocol):
    """The device end of the outbound WebSocket."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[bool] = Deferred()
        #: The code and reason the connection closed with.
        self.close: tuple[int | None, str | None] | None = None
        self.received: list[dict[str, Any]] = []
        self._wanted: list[tuple[int, Deferred[list[dict[str, Any]]]]] = []
        self._pongs: list[Deferred[bytes]] = []

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received.append(json.loads(payload))
        ready = [(n, d) for n, d in self._wanted if len(self.received) >= n]
        self._wanted = [(n, d) for n, d in self._wanted if len(self.received) < n]
        for n, d in ready:
            d.callback(self.received[:n])

    def onPong(self, payload: bytes) -> None:
        if self._pongs:
            self._pongs.pop(0).callback(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(RuntimeError(f"WebSocket not opened: {code} {reason}"))
        if not self.closed.called:
            self.close = (code, reason)
            self.closed.callback(wasClean)

    def messages(self, count: int) -> Deferred[list[dict[str, Any]]]:
        """The first C{count} messages from the server, once they arrived."""
        d: Deferred[list[dict[str, Any]]] = Deferred()
        if len(self.received) >= count:
            d.callback(self.received[:count])
        else:
            self._wanted.append((count, d))
        return d

    def send(self, frame: dict[str, Any]) -> None:
        self.sendMessage(json.dumps(frame).encode("utf-8"))

    def sync(self) -> Deferred[bytes]:
        """
        Ping the server: it handles a connection's frames in order, so once the pong is
        back, every frame sent before the ping has been processed.
        """
        d: Deferred[bytes] = Deferred()
        self._pongs.append(d)
        self.sendPing(b"sync")
        return d
