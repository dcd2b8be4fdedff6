"""
Pages under attack: while one peer's single packet of pipelined C{GET /status} is answered,
how long do a device's frames and a C{GET /} wait?

    python bench/pages.py [--devices 600] [--requests 2000] [--distinct] [--source DIR]

Starts C{twistd shellylog} (the code in C{--source}, this checkout by default) as a real
process on loopback, connects C{--devices} devices (the load generator's, each through its
full status and bootstrap), then measures, every C{--interval} seconds, the round trip of a
WebSocket ping on one device's connection (the server answers it after every frame before
it on that socket) and of a C{GET /} on a new connection: first for a few quiet seconds,
then from the moment one more connection sends C{--requests} pipelined C{GET /status} in one
write (the attacker reads every answer) until all are answered. Prints the latencies of
both phases (median, 99th percentile, maximum) and how long the answers took. Run by hand:
it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]

from loadgen import Device, Generator, client_frame  # noqa: E402
from run import free_port, raise_file_limit, wait_listening  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import ClientFactory, Protocol  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402


class Probes:
    """The latencies measured, by phase and kind."""

    def __init__(self) -> None:
        self.phase = "quiet"
        self.latencies: dict[tuple[str, str], list[float]] = {}
        self.pings: dict[bytes, tuple[str, float]] = {}
        self.seq = 0

    def record(self, phase: str, kind: str, seconds: float) -> None:
        self.latencies.setdefault((phase, kind), []).append(seconds)


class Health(Protocol):
    """C{GET /} on a new connection; its latency runs from the dial to the last byte."""

    def __init__(self, probes: Probes, phase: str, start: float) -> None:
        self.probes, self.phase, self.start = probes, phase, start
        self.received = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.received.startswith(b"HTTP/1.1 200"):
            self.probes.record(self.phase, "GET /", time.monotonic() - self.start)


class HealthFactory(ClientFactory):
    noisy = False

    def __init__(self, probes: Probes) -> None:
        self.probes = probes
        self.phase = probes.phase
        self.start = time.monotonic()

    def buildProtocol(self, addr: object) -> Health:
        return Health(self.probes, self.phase, self.start)


class Attacker(Protocol):
    """One packet of pipelined C{GET /status}; counts the answers as they come."""

    def __init__(self, requests: int, done: Any, distinct: bool = False) -> None:
        self.requests = requests
        self.distinct = distinct
        self.done = done
        self.answers = 0
        self.bytes = 0
        self.tail = b""

    def connectionMade(self) -> None:
        paths = [b"/status?offset=%d" % i if self.distinct else b"/status"
                 for i in range(self.requests)]
        packet = b"".join(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                          for path in paths[:-1])
        packet += b"GET " + paths[-1] + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        self.started = time.monotonic()
        assert self.transport is not None
        self.transport.write(packet)

    def dataReceived(self, data: bytes) -> None:
        self.bytes += len(data)
        chunk = self.tail + data
        self.answers += chunk.count(b"HTTP/1.1 200 OK")
        # A status line cut in two is counted in the next chunk (and never twice: a tail
        # shorter than the line holds no whole line).
        self.tail = chunk[-14:]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.done(self)


class AttackerFactory(ClientFactory):
    noisy = False

    def __init__(self, attacker: Attacker) -> None:
        self.attacker = attacker

    def buildProtocol(self, addr: object) -> Attacker:
        return self.attacker


def summary(values: list[float]) -> str:
    if not values:
        return "none answered"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"median {statistics.median(ordered) * 1000:8.1f} ms   p99 {p99 * 1000:8.1f} ms   "
            f"max {ordered[-1] * 1000:8.1f} ms   ({len(ordered)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=600)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between probes")
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds measured before")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--distinct", action="store_true",
                        help="each request another page (?offset=N), so none is served "
                        "from the encoded pages kept")
    parser.add_argument("--source", default=ROOT,
                        help="the checkout whose shellylog runs (default: this one)")
    args = parser.parse_args()
    raise_file_limit(args.devices + 1000)
    workdir = tempfile.mkdtemp(prefix="shellylog-pages-")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.source))
    log_path = os.path.join(workdir, "server.log")
    argv = [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "-n", "--pidfile=", "shellylog",
        "--port", f"tcp:{port}:interface=127.0.0.1:backlog=1024",
        "--csv", os.path.join(workdir, "pages.csv"),
        "--max-connections", str(args.devices + 1000),
    ]
    where = subprocess.run(
        [sys.executable, "-c", "import shellylog; print(shellylog.__file__)"],
        env=env, cwd=workdir, capture_output=True, text=True, check=True,
    ).stdout.strip()
    print(f"server: shellylog from {os.path.dirname(where)}; log {log_path}")
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir,
                                  env=env)
    try:
        wait_listening(port, server, log_path)
        return run(args, port)
    finally:
        server.kill()
        server.wait()


def run(args: argparse.Namespace, port: int) -> int:
    gen = Generator(argparse.Namespace(port=port, devices=args.devices, scenario="idle",
                                       concurrency=200))
    gc.collect()
    gc.freeze()
    probes = Probes()
    result: dict[str, Any] = {}

    def probe() -> None:
        device: Device | None = gen.devices[0]
        if device is not None:
            probes.seq += 1
            payload = b"%d" % probes.seq
            probes.pings[payload] = (probes.phase, time.monotonic())
            device.transport.write(client_frame(payload, opcode=9))
        reactor.connectTCP("127.0.0.1", port, HealthFactory(probes))
        if probes.phase != "done":
            reactor.callLater(args.interval, probe)

    def attacked(attacker: Attacker) -> None:
        result["seconds"] = time.monotonic() - attacker.started
        result["answers"] = attacker.answers
        result["bytes"] = attacker.bytes
        # A last second of probes after the attack, for the stragglers to come back.
        reactor.callLater(1.0, finish)

    def attack() -> None:
        probes.phase = "attack"
        attacker = Attacker(args.requests, attacked, args.distinct)
        reactor.connectTCP("127.0.0.1", port, AttackerFactory(attacker))

    def finish() -> None:
        probes.phase = "done"
        if reactor.running:
            reactor.stop()

    def all_connected() -> None:
        device = gen.devices[0]
        assert device is not None
        original = device.frame

        def frame(opcode: int, payload: bytes) -> None:
            if opcode == 10 and payload in probes.pings:
                phase, sent = probes.pings.pop(payload)
                probes.record(phase, "device ping", time.monotonic() - sent)
            else:
                original(opcode, payload)

        device.frame = frame  # type: ignore[method-assign]
        print(f"{args.devices} devices connected; {args.quiet:g} s quiet, then "
              f"{args.requests} pipelined GET /status"
              + (" (each ?offset=N)" if args.distinct else ""))
        probe()
        reactor.callLater(args.quiet, attack)

    gen.on_all_bootstrapped = all_connected
    reactor.callWhenRunning(gen.dial_paced)
    reactor.callLater(args.timeout, finish)
    reactor.run()
    if "seconds" not in result:
        print(f"timed out after {args.timeout:g} s")
        return 1
    unanswered = [phase for phase, _ in probes.pings.values() if phase != "done"]
    print(f"{result['answers']} of {args.requests} answers ({result['bytes'] / 1e6:.0f} MB) "
          f"in {result['seconds']:.2f} s")
    for phase in ("quiet", "attack"):
        for kind in ("device ping", "GET /"):
            print(f"  {phase:6} {kind:12} {summary(probes.latencies.get((phase, kind), []))}")
    if unanswered:
        print(f"  pings never answered: {len(unanswered)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
