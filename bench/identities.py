"""
Many short connections, each a new device id (issue 10): what each id costs the server.

Starts shellylog from a source tree (``--tree``, this checkout by default) as a process,
then, one after the other, ``--ids`` connections each upgrade, send one NotifyStatus with a
new ``src`` (500 W on switch:0, so each id also writes a row) and close. Prints the server's
RSS growth per id, and the size and time of ``GET /status`` afterwards, as one JSON line.
Run by hand::

    .venv/bin/python bench/identities.py --ids 20000
    .venv/bin/python bench/identities.py --ids 20000 --tree /path/to/an/older/checkout
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (payloads under 64 KiB)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def visit(port: int, device_id: str) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError(f"closed during the handshake: {got[:200]!r}")
            got += chunk
        if not got.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(got.split(b"\r\n", 1)[0].decode())
        message = {"src": device_id, "dst": "ws", "method": "NotifyStatus",
                   "params": {"switch:0": {"apower": 500.0, "voltage": 230.0}}}
        s.sendall(frame(json.dumps(message).encode()) + frame(b"\x03\xe8", opcode=8))
        # Wait for the server's close, as a device would.
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except TimeoutError:
            pass


def get(port: int, path: str) -> tuple[bytes, float]:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    return data, time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--tree", default=os.path.dirname(HERE))
    parser.add_argument("--rounds", type=int, default=1,
                        help="batches of --ids new ids, each followed by --settle")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to wait before measuring (62: past a minute tick)")
    parser.add_argument("server_args", nargs="*", help="more shellylog options (after --)")
    args = parser.parse_args()
    port = free_port()
    work = tempfile.mkdtemp(prefix="shellylog-identities-")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.tree))
    server = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
         "--pidfile=", "--logfile", os.path.join(work, "server.log"), "shellylog",
         "--port", f"tcp:{port}:interface=127.0.0.1", "--csv", os.path.join(work, "rows.csv"),
         "--fsync", "off", "--max-connections", "100000", *args.server_args],
        cwd=work, env=env)
    try:
        for _ in range(100):
            try:
                get(port, "/")
                break
            except OSError:
                time.sleep(0.1)
        for n in range(args.warmup):
            visit(port, f"shellywarmup-{n:012x}")
        time.sleep(1)
        rss0 = rss_kib(server.pid)
        rounds = []
        t0 = time.monotonic()
        for r in range(args.rounds):
            for n in range(args.ids):
                visit(port, f"shellyplus1pm-{r * args.ids + n:012x}")
            time.sleep(args.settle)
            rounds.append(rss_kib(server.pid) - rss0)
        took = time.monotonic() - t0
        rss1 = rss_kib(server.pid)
        body, seconds = get(port, "/status")
        document = json.loads(body.split(b"\r\n\r\n", 1)[1])
        print(json.dumps({
            "tree": args.tree,
            "ids": args.ids * args.rounds,
            "seconds": round(took, 1),
            "rss_growth_kib": rss1 - rss0,
            "rss_growth_kib_by_round": rounds,
            "bytes_per_id": round((rss1 - rss0) * 1024 / (args.ids * args.rounds)),
            "status_bytes": len(body),
            "status_seconds": round(seconds, 3),
            "status_devices": len(document["devices"]),
            "max_devices": document["server"]["options"].get("max-devices"),
        }))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
