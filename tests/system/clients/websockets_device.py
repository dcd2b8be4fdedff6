"""
A Shelly device played by the Python C{websockets} library in its default configuration
(C{permessage-deflate} offered, as by default), for C{tests/system/test_clients.py}.

Usage::

    python websockets_device.py URL PLAN [--cafile PEM] [--subprotocol NAME]

C{PLAN} is a JSON file C{{"device_id": ..., "status": {...}, "update": {...}}}: the full
status to answer C{Shelly.GetStatus} with, and the C{NotifyStatus} params to send once
both bootstrap requests are answered. C{--cafile} trusts that CA (for C{wss://}) through an
ssl context; C{--subprotocol} offers a subprotocol. Nothing else differs from the library's
defaults.

The device answers C{Shelly.GetStatus} with the status and any other request with the
JSON-RPC error object the firmware sends. Once it has both bootstrap requests
(C{NotifyStatus} and C{Shelly.GetStatus}), it sends the update, pings the server (the server
handles a connection's frames in order, so once the pong is back it has the update), and
prints one line of JSON: what it offered and what was negotiated, and the requests it got.
It then keeps the connection open until the server closes it, prints a second line with the
close code, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

#: The bootstrap requests the server sends on connect.
BOOTSTRAP = {"NotifyStatus", "Shelly.GetStatus"}
#: The firmware's JSON-RPC error code for a method it does not have.
NOT_FOUND = -114
#: Seconds after which the device gives up, so that no test run leaves it behind.
DEADLINE = 60.0


def answer(request: dict[str, Any], device_id: str, status: dict[str, Any]) -> dict[str, Any]:
    """A device's answer to C{request}: the full status, or the firmware's error object."""
    frame: dict[str, Any] = {"id": request["id"], "src": device_id}
    if isinstance(request.get("src"), str):
        frame["dst"] = request["src"]
    if request.get("method") == "Shelly.GetStatus":
        frame["result"] = status
    else:
        frame["error"] = {"code": NOT_FOUND,
                          "message": f"Method {request.get('method')} failed: not found"}
    return frame


async def serve(ws: ClientConnection, device_id: str, status: dict[str, Any],
                requests: list[dict[str, Any]], until: set[str] | None) -> None:
    """
    Answer the server's requests, recording each in C{requests}: until C{until} (method
    names) have all arrived, or, with C{None}, until the connection closes.
    """
    while until is None or not until <= {r.get("method") for r in requests}:
        frame = json.loads(await ws.recv())
        if isinstance(frame, dict) and "id" in frame and "method" in frame:
            requests.append(frame)
            await ws.send(json.dumps(answer(frame, device_id, status)))


async def device(url: str, plan: dict[str, Any], context: ssl.SSLContext | None,
                 subprotocol: str | None) -> None:
    """Play the device on C{url} as the module's docstring says."""
    device_id: str = plan["device_id"]
    options: dict[str, Any] = {}
    if context is not None:
        options["ssl"] = context
    if subprotocol is not None:
        options["subprotocols"] = [subprotocol]
    async with connect(url, **options) as ws:
        assert ws.request is not None and ws.response is not None
        requests: list[dict[str, Any]] = []
        await serve(ws, device_id, plan["status"], requests, BOOTSTRAP)
        server = next(r["src"] for r in requests if isinstance(r.get("src"), str))
        await ws.send(json.dumps({
            "src": device_id, "dst": server, "method": "NotifyStatus",
            "params": {"ts": round(time.time(), 2), **plan["update"]},
        }))
        await (await ws.ping())
        seen = {
            "offered_extensions": ws.request.headers.get("Sec-WebSocket-Extensions"),
            "extensions_header": ws.response.headers.get("Sec-WebSocket-Extensions"),
            "extensions": [type(e).__name__ for e in ws.protocol.extensions],
            "subprotocol": ws.subprotocol,
            "requests": requests,
        }
        print(json.dumps(seen), flush=True)
        answered = len(requests)
        try:
            await serve(ws, device_id, plan["status"], requests, None)
        except ConnectionClosed:
            pass
    later = [r.get("method") for r in requests[answered:]]
    print(json.dumps({"close_code": ws.close_code, "close_reason": ws.close_reason,
                      "later_requests": later}), flush=True)


def main() -> None:
    """Parse the command line and play the device; exit 0 once the server closed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("plan")
    parser.add_argument("--cafile")
    parser.add_argument("--subprotocol")
    args = parser.parse_args()
    with open(args.plan, encoding="utf-8") as f:
        plan = json.load(f)
    context = None
    if args.cafile is not None:
        context = ssl.create_default_context(cafile=args.cafile)
    asyncio.run(asyncio.wait_for(device(args.url, plan, context, args.subprotocol), DEADLINE))
    sys.exit(0)


if __name__ == "__main__":
    main()
