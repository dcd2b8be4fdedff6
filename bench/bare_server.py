"""
The benchmark's baseline: a bare Autobahn WebSocket server on Twisted that receives and
discards every frame -- the ceiling of the stack shellylog is built on.

It uses shellylog's protocol options (C{shellylog.internals.protocol_options}), except the
two with which shellylog takes work over from Autobahn (applyMask=False and
utf8validateIncoming=False: shellylog unmasks and checks UTF-8 itself, more cheaply): here
Autobahn does both, as it does by default (C{shellylog.internals.TAKEN_OVER}). Like
shellylog, it sends two small requests when a socket opens (so a reconnect storm costs both
servers the same writes); it parses nothing, keeps nothing and writes no log line per
connection.

    python bench/bare_server.py --port PORT [--backlog N]
"""

from __future__ import annotations

import argparse
import json

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import reactor

from shellylog.config import Limits
from shellylog.internals import TAKEN_OVER, protocol_options

# What shellylog sends on open, byte for byte the same size.
BOOTSTRAP = [
    json.dumps(
        {"jsonrpc": "2.0", "id": 1, "src": "shellylog", "method": "NotifyStatus",
         "params": {"enable": True}},
        separators=(",", ":"),
    ).encode(),
    json.dumps(
        {"jsonrpc": "2.0", "id": 2, "src": "shellylog", "method": "Shelly.GetStatus"},
        separators=(",", ":"),
    ).encode(),
]


class BareProtocol(WebSocketServerProtocol):
    """Accepts the handshake, sends the two requests, discards everything."""

    def onConnect(self, request: ConnectionRequest) -> str | None:
        return "json-rpc" if "json-rpc" in request.protocols else None

    def onOpen(self) -> None:
        for frame in BOOTSTRAP:
            self.sendMessage(frame)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description="A bare Autobahn server for the benchmark.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=50, help="listen backlog (Twisted's 50)")
    args = parser.parse_args()
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{args.port}")
    factory.protocol = BareProtocol
    # shellylog's options, but for the unmasking and UTF-8 check, which shellylog does
    # itself and Autobahn does here.
    factory.setProtocolOptions(**(protocol_options(Limits().max_message) | TAKEN_OVER))
    reactor.listenTCP(
        args.port, factory, backlog=args.backlog, interface="127.0.0.1"
    )
    reactor.run()


if __name__ == "__main__":
    main()
