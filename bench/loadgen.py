"""
The benchmark's load generator: thousands of WebSocket "devices" as plain Twisted TCP
protocols that send pre-built, pre-masked frames, so the server and not this process is
what runs out of CPU.

The frames are the simulator's (L{shellylog.simulate.switch}): a Pro 4PM's C{NotifyFullStatus}
on open, its C{NotifyStatus} deltas, and the answers a device gives to the server's
requests (an error object for C{NotifyStatus}, the full status for C{Shelly.GetStatus}).
Each device's frames are built once, before any measuring, with the device's own id.

    python bench/loadgen.py SCENARIO --port PORT --server-pid PID [--devices N] ...

prints one JSON object of results on stdout and exits. The scenarios:

 - C{throughput}: every device sends deltas as fast as the server takes them. A device
   sends a window of deltas followed by a WebSocket ping and keeps two windows in flight;
   the server answers a ping after it has handled every frame before it on that socket,
   so each pong counts a window of frames as I{processed}, whatever the socket buffers
   hold.
 - C{idle}: the devices connect (a few hundred handshakes at a time), then each sends
   one delta every 5 s; the server's RSS before and after, and its CPU over a window.
 - C{storm}: every device dials at once; the time until the last one has been asked
   for its status (C{Shelly.GetStatus}, the server's bootstrap request).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock, LoopingCall
from twisted.python.failure import Failure

from shellylog.simulate.model import device_id, device_mac, encode
from shellylog.simulate.switch import SWITCH_PROFILES

MASK = b"\x37\xfa\x21\x3d"
PROFILE = SWITCH_PROFILES["pro4pm"]
#: Frames per throughput window, and windows in flight per device.
WINDOW = 32
IN_FLIGHT = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One complete, masked client-to-server WebSocket frame."""
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    key = (MASK * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + MASK + masked


PING = client_frame(b"load", opcode=9)


def proc_stat(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes of process C{pid}."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return cpu, rss * 1024


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Templates:
    """The frames of device 0, as text, from which every device's frames are made."""

    def __init__(self) -> None:
        clock = Clock()
        clock.advance(time.time())
        device = PROFILE.create_device(0, clock, uptime=6.0)
        self.id = device.device_id
        self.mac = device.mac
        self.full = encode(device.connected()[0]).decode()
        self.status = json.dumps(device.full_status(), separators=(",", ":"))
        deltas: list[str] = []
        while len(deltas) < WINDOW:
            clock.advance(1)
            for frame in device.sample():
                if any(isinstance(c, dict) and "apower" in c for c in frame["params"].values()):
                    deltas.append(encode(frame).decode())
        self.deltas = deltas[:WINDOW]

    def personal(self, text: str, index: int) -> str:
        return text.replace(self.id, device_id(PROFILE, index)).replace(
            f'"mac":"{self.mac}"', f'"mac":"{device_mac(index)}"'
        )


class Device(Protocol):
    """One fake device: raw WebSocket over TCP, frames pre-built."""

    transport: ITCPTransport

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.index = index
        self.buf = bytearray()
        self.open = False
        #: The server asked for the status: the bootstrap is done.
        self.booted = False
        self.windows_out = 0

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.transport.write(self.gen.handshake)

    def dataReceived(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self.gen.refused += 1
                self.gen.note(f"handshake refused: {status!r}")
                self.transport.abortConnection()
                return
            del buf[: end + 4]
            self.open = True
            self.gen.opened(self)
        pos, n = 0, len(buf)
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < head + length:
                break
            opcode = buf[pos] & 0x0F
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            self.frame(opcode, payload)
        if pos:
            del buf[:pos]

    def frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 1:
            if self.answer(payload) and not self.booted:
                self.booted = True
                self.gen.bootstrapped(self)
        elif opcode == 9:
            # The server's keep-alive ping: answer it, as devices do.
            self.transport.write(client_frame(payload, opcode=10))
        elif opcode == 10:
            self.gen.pong(self)
        elif opcode == 8:
            self.gen.note(f"closed by the server: {payload[2:]!r}")

    def answer(self, payload: bytes) -> bool:
        """Answer a request as a device does; return whether it was C{Shelly.GetStatus}."""
        try:
            request = json.loads(payload)
        except ValueError:
            return False
        if not isinstance(request, dict) or "id" not in request or "method" not in request:
            return False
        rid = json.dumps(request["id"])
        src = device_id(PROFILE, self.index)
        get_status = str(request["method"]).lower() == "shelly.getstatus"
        if get_status:
            text = f'{{"id":{rid},"src":"{src}","dst":"shellylog","result":'
            frame = client_frame(text.encode() + self.gen.statuses[self.index] + b"}")
        else:
            error = {"code": -114, "message": f"Method {request['method']} failed: not found"}
            text = f'{{"id":{rid},"src":"{src}","dst":"shellylog","error":{json.dumps(error)}}}'
            frame = client_frame(text.encode())
        self.transport.write(frame)
        return get_status

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.gen.lost(self)


class DeviceFactory(ClientFactory):
    noisy = False

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.index = index

    def buildProtocol(self, addr: object) -> Device:
        return Device(self.gen, self.index)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.gen.connect_failed(self.index, reason)


class Generator:
    """The fleet and what is counted of it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.port: int = args.port
        self.handshake = (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        t = Templates()
        n = args.devices
        self.fulls = [client_frame(t.personal(t.full, i).encode()) for i in range(n)]
        self.statuses = [t.personal(t.status, i).encode() for i in range(n)]
        self.deltas: list[list[bytes]] = []
        self.windows: list[bytes] = []
        if args.scenario == "throughput":
            self.windows = [
                b"".join(client_frame(t.personal(d, i).encode()) for d in t.deltas) + PING
                for i in range(n)
            ]
        elif args.scenario == "idle":
            self.deltas = [
                [client_frame(t.personal(d, i).encode()) for d in t.deltas[:4]] for i in range(n)
            ]
        self.devices: list[Device | None] = [None] * n
        self.open_count = 0
        self.boot_count = 0
        self.failed = 0
        self.refused = 0
        self.lost_count = 0
        self.redials = 0
        self.notes: dict[str, int] = {}
        self.acked = 0
        self.sending = False
        self.next_index = 0
        self.in_handshake = 0
        self.on_all_bootstrapped: Callable[[], None] | None = None
        self.t0 = 0.0
        self.t_open = 0.0
        self.t_boot = 0.0

    def note(self, text: str) -> None:
        self.notes[text] = self.notes.get(text, 0) + 1

    # -- connecting ------------------------------------------------------------------

    def dial(self, index: int) -> None:
        reactor.connectTCP(
            "127.0.0.1", self.port, DeviceFactory(self, index), timeout=60
        )

    def dial_paced(self) -> None:
        """Dial the next devices, keeping at most C{--concurrency} handshakes going."""
        while self.next_index < len(self.devices) and self.in_handshake < self.args.concurrency:
            self.in_handshake += 1
            self.dial(self.next_index)
            self.next_index += 1

    def connect_failed(self, index: int, reason: Failure) -> None:
        self.failed += 1
        self.note(f"connect failed: {reason.getErrorMessage()}")
        reactor.callLater(0.05, self.dial, index)

    def opened(self, device: Device) -> None:
        self.devices[device.index] = device
        self.open_count += 1
        if self.open_count == len(self.devices):
            self.t_open = time.monotonic()
        device.transport.write(self.fulls[device.index])

    def bootstrapped(self, device: Device) -> None:
        self.boot_count += 1
        if self.args.scenario != "storm":
            self.in_handshake -= 1
            self.dial_paced()
        if self.sending and self.windows:
            self.send_windows(device)
        if self.boot_count == len(self.devices):
            self.t_boot = time.monotonic()
            if self.on_all_bootstrapped is not None:
                self.on_all_bootstrapped()

    def lost(self, device: Device) -> None:
        self.lost_count += 1
        if self.devices[device.index] is device:
            self.devices[device.index] = None
        if not device.booted:
            # Dropped before its bootstrap (the server's handshake timeout, say): dial
            # again after a second, as a device's back-off would.
            self.redials += 1
            if device.open:
                self.open_count -= 1
            reactor.callLater(1.0, self.dial, device.index)

    # -- throughput ------------------------------------------------------------------

    def send_windows(self, device: Device) -> None:
        window = self.windows[device.index]
        while device.windows_out < IN_FLIGHT:
            device.windows_out += 1
            device.transport.write(window)

    def pong(self, device: Device) -> None:
        device.windows_out -= 1
        self.acked += WINDOW
        if self.sending:
            self.send_windows(device)


def throughput(gen: Generator, pid: int, done: Callable[[dict[str, Any]], None]) -> None:
    args = gen.args

    def measure() -> None:
        start = (time.monotonic(), gen.acked, proc_stat(pid)[0], own_cpu())

        def end() -> None:
            now, acked, cpu, mine = time.monotonic(), gen.acked, proc_stat(pid)[0], own_cpu()
            gen.sending = False
            elapsed = now - start[0]
            done(
                {
                    "frames_per_s": (acked - start[1]) / elapsed,
                    "server_cpu_pct": 100 * (cpu - start[2]) / elapsed,
                    "loadgen_cpu_pct": 100 * (mine - start[3]) / elapsed,
                    "seconds": elapsed,
                    "devices_open": sum(1 for d in gen.devices if d is not None),
                }
            )

        reactor.callLater(args.seconds, end)

    def all_in() -> None:
        gen.sending = True
        for device in gen.devices:
            if device is not None:
                gen.send_windows(device)
        reactor.callLater(args.warmup, measure)

    gen.on_all_bootstrapped = all_in
    gen.t0 = time.monotonic()
    gen.dial_paced()


def idle(gen: Generator, pid: int, done: Callable[[dict[str, Any]], None]) -> None:
    args = gen.args
    _, rss_base = proc_stat(pid)
    n = len(gen.devices)
    slices = 50  # every 0.1 s a fiftieth of the fleet: one delta per device per 5 s
    state = {"slice": 0, "round": 0}

    def tick() -> None:
        k = state["slice"]
        for i in range(k * n // slices, (k + 1) * n // slices):
            device = gen.devices[i]
            if device is not None:
                deltas = gen.deltas[i]
                device.transport.write(
                    deltas[state["round"] % len(deltas)]
                )
        state["slice"] = (k + 1) % slices
        if state["slice"] == 0:
            state["round"] += 1

    def all_in() -> None:
        connect_seconds = time.monotonic() - gen.t0

        def settled() -> None:
            _, rss_connected = proc_stat(pid)
            LoopingCall(tick).start(5.0 / slices)

            def measure() -> None:
                start = time.monotonic(), proc_stat(pid)[0]

                def end() -> None:
                    now = time.monotonic()
                    cpu, rss_end = proc_stat(pid)
                    elapsed = now - start[0]
                    done(
                        {
                            "devices": n,
                            "devices_open": sum(1 for d in gen.devices if d is not None),
                            "rss_base": rss_base,
                            "rss_connected": rss_connected,
                            "rss_end": rss_end,
                            "rss_per_device": (rss_end - rss_base) / n,
                            "server_cpu_pct": 100 * (cpu - start[1]) / elapsed,
                            "seconds": elapsed,
                            "connect_seconds": connect_seconds,
                        }
                    )

                reactor.callLater(args.seconds, end)

            reactor.callLater(args.warmup, measure)

        reactor.callLater(args.settle, settled)

    gen.on_all_bootstrapped = all_in
    gen.t0 = time.monotonic()
    gen.dial_paced()


def storm(gen: Generator, pid: int, done: Callable[[dict[str, Any]], None]) -> None:
    n = len(gen.devices)
    cpu0 = proc_stat(pid)[0]

    def all_in() -> None:
        cpu = proc_stat(pid)[0]
        done(
            {
                "devices": n,
                "seconds": gen.t_boot - gen.t0,
                "seconds_to_open": gen.t_open - gen.t0,
                "server_cpu_seconds": cpu - cpu0,
            }
        )

    gen.on_all_bootstrapped = all_in
    gen.t0 = time.monotonic()
    for i in range(n):
        gen.dial(i)


SCENARIOS = {"throughput": throughput, "idle": idle, "storm": storm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes at a time")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.devices + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, args.devices + 100),) * 2)
    gen = Generator(args)
    # Nothing built from here on needs collecting; keep the collector off the hot path.
    gc.collect()
    gc.freeze()

    def done(result: dict[str, Any]) -> None:
        result.update(
            scenario=args.scenario,
            connect_failures=gen.failed,
            refused=gen.refused,
            lost=gen.lost_count,
            redials=gen.redials,
            notes=gen.notes,
        )
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        # Leave the sockets to the kernel: the server is killed next.
        os._exit(0)

    def timeout() -> None:
        done(
            {
                "error": f"timed out after {args.timeout:g} s",
                "devices": args.devices,
                "open": gen.open_count,
                "bootstrapped": gen.boot_count,
            }
        )

    reactor.callLater(args.timeout, timeout)
    reactor.callWhenRunning(
        SCENARIOS[args.scenario], gen, args.server_pid, done
    )
    reactor.run()


if __name__ == "__main__":
    main()
