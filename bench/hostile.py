"""
What one hostile peer costs the server, measured in-process on a fake clock: the real site
and protocol (the tests' in-memory harness), memory with C{tracemalloc}, CPU with
C{time.process_time}. Run by hand from the repository's root, not a timed test:

    python bench/hostile.py [components|components60|fragments|fullstatus|cpu|minute|all]

prints one JSON object per scenario:

 - C{components}: one connection sends C{NotifyStatus} frames of 10,000 new C{switch:<x>}
   components each, without C{--max-bytes-rate}; memory held while it is open, and after
   it closed. C{components60}: 600 frames of 60 each, within every limit of a frame.
 - C{fragments}: one connection holds an unfinished message of 2-byte fragments, up to
   C{--max-message}; memory held while it is open.
 - C{fullstatus}: one full status of 15,000 empty C{switch:N} components (as many as fit
   in 256 KiB); memory held while open.
 - C{cpu}: frames of 256 KiB of tiny objects (C{[{},{},...]} in a status; the same with a
   space after each comma, which takes the standard library's slower decoder), and of
   14,000 empty C{switch:N} components; CPU per frame.
 - C{minute}: one peer's minute at the default limits, 600 such frames of tiny objects;
   the CPU of all of them, and whether the connection was closed.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import tracemalloc
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.trial.unittest import SynchronousTestCase

from tests.support.wire import Harness

DEVICE = "shellypro4pm-aabbccddeeff"


def _harness(unmetered: bool = False) -> Harness:
    """
    The tests' harness; C{unmetered}: without C{--max-bytes-rate} in the way, to measure
    what the frames themselves cost (a tree before it has the option runs as it is).
    """
    from shellylog.config import Limits

    case = SynchronousTestCase()
    if not unmetered:
        return Harness(case)
    try:
        limits = Limits(max_bytes_rate=1 << 40)
    except TypeError:
        limits = Limits()
    return Harness(case, limits=limits)


def _notify(params: Any, method: str = "NotifyStatus") -> bytes:
    return json.dumps({"src": DEVICE, "method": method, "params": params},
                      separators=(",", ":")).encode("utf-8")


def _held(f: Any) -> int:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    keep = f()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    del keep
    return after - before


def components(frames: int = 20, per_frame: int = 10_000) -> dict[str, Any]:
    # Unmetered: at the default --max-bytes-rate the connection is closed after 2 MiB.
    h = _harness(unmetered=True)
    client, connection = h.connect_ws("/ws")
    client.sendMessage(_notify({"switch:0": {"apower": 10}}))
    h.flush()
    payloads = [
        _notify({f"switch:{n * per_frame + i + 100}": {} for i in range(per_frame)})
        for n in range(frames)
    ]
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    for payload in payloads:
        client.sendMessage(payload)
        h.flush()
    gc.collect()
    open_bytes = tracemalloc.get_traced_memory()[0] - start
    client.sendClose(code=1000)
    h.flush()
    h.advance(5)
    del connection
    gc.collect()
    closed_bytes = tracemalloc.get_traced_memory()[0] - start
    return {"scenario": "components", "frames": frames, "components_per_frame": per_frame,
            "frame_bytes": len(payloads[0]), "rejected": dict(h.registry.rejected),
            "held_open_KiB": round(open_bytes / 1024), "held_after_close_KiB":
            round(closed_bytes / 1024)}


def _unfinished(fragment: int, limit: int | None = None) -> dict[str, Any]:
    """One connection sends an unfinished text message of C{fragment}-byte frames."""
    h = _harness()
    client, connection = h.connect_ws("/ws")
    limit = limit or h.factory.limits.max_message
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    # A text frame without FIN, then continuation frames, never finished.
    client.beginMessage()
    sent = 0
    while sent + fragment <= limit - 2:
        client.beginMessageFrame(fragment)
        client.sendMessageFrameData(b" " * fragment)
        sent += fragment
        if sent % 8192 < fragment:
            h.flush()
    h.flush()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - start
    server = connection.server
    return {"fragment_bytes": fragment, "bytes_sent": sent, "fragments_sent": sent // fragment,
            "server_open": server.state == server.STATE_OPEN,
            "rejected": dict(h.registry.rejected), "held_open_KiB": round(held / 1024)}


def fragments() -> dict[str, Any]:
    return {"scenario": "fragments",
            # The attack: 2-byte fragments up to --max-message.
            "tiny": _unfinished(2),
            # The most an open connection may hold now: 64 fragments, --max-message bytes.
            "largest_open": _unfinished(4096, limit=64 * 4096 + 2)}


def fullstatus(count: int = 15_000) -> dict[str, Any]:
    h = _harness()
    client, _connection = h.connect_ws("/ws")
    payload = _notify({f"switch:{i}": {} for i in range(count)}, "NotifyFullStatus")
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    client.sendMessage(payload)
    h.flush()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - start
    return {"scenario": "fullstatus", "components": count, "frame_bytes": len(payload),
            "rejected": dict(h.registry.rejected), "held_open_KiB": round(held / 1024)}


def tiny_objects_frame(size: int = 256 * 1024, separator: bytes = b",") -> bytes:
    """A status of at most C{size} bytes whose one component is a list of empty objects."""
    head = b'{"src":"' + DEVICE.encode() + b'","method":"NotifyStatus","params":{"x":['
    tail = b"]}}"
    n = (size - len(head) - len(tail) + len(separator)) // (2 + len(separator))
    return head + separator.join([b"{}"] * n) + tail


def cpu(frames: int = 50) -> dict[str, Any]:
    # Unmetered: the CPU of the frames themselves (onMessage is called directly).
    h = _harness(unmetered=True)
    _client, connection = h.connect_ws("/ws")
    payload = tiny_objects_frame()
    results: dict[str, Any] = {"scenario": "cpu", "frame_bytes": len(payload), "frames": frames}
    server = connection.server
    # With a space after each comma, orjson's result cannot be proved free of duplicate
    # keys: the frame goes to the standard library's slower decoder.
    for label, text in (("tiny_objects", payload),
                        ("tiny_objects_spaced", tiny_objects_frame(separator=b", ")),
                        ("switch_components",
                         _notify({f"switch:{i + 100}": {} for i in range(14_000)}))):
        t0 = time.process_time()
        for _ in range(frames):
            # The protocol's own handling of a whole message, as onMessageEnd hands it on.
            server.onMessage(text, False)
        results[f"{label}_ms_per_frame"] = round((time.process_time() - t0) / frames * 1000, 2)
    results["rejected"] = dict(h.registry.rejected)
    return results


def minute(frames: int = 600) -> dict[str, Any]:
    """
    One peer's minute at the default limits: C{--max-rate} (600) frames of 256 KiB of
    tiny objects, each handed to the protocol as a whole message; the CPU of all of them.
    """
    h = _harness()
    _client, connection = h.connect_ws("/ws")
    server = connection.server
    payload = tiny_objects_frame()
    t0 = time.process_time()
    for _ in range(frames):
        server.onMessage(payload, False)
    cpu_s = time.process_time() - t0
    return {"scenario": "minute", "frames": frames, "frame_bytes": len(payload),
            "cpu_s": round(cpu_s, 3), "rejected": dict(h.registry.rejected),
            "closed": server.state != server.STATE_OPEN}


def components60() -> dict[str, Any]:
    """Frames within every per-frame limit: 600 of 60 new C{switch:<x>} components each."""
    return components(frames=600, per_frame=60)


SCENARIOS = {"components": components, "components60": components60, "fragments": fragments,
             "fullstatus": fullstatus, "cpu": cpu, "minute": minute}


def main(argv: list[str]) -> None:
    names = argv[1:] or ["all"]
    if names == ["all"]:
        names = list(SCENARIOS)
    for name in names:
        if name not in ("cpu", "minute"):
            tracemalloc.start()
        print(json.dumps(SCENARIOS[name]()), flush=True)
        tracemalloc.stop()


if __name__ == "__main__":
    main(sys.argv)
