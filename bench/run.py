"""
Hold shellylog against a bare Autobahn server, with the same traffic, and print one table.

    python bench/run.py            # the full benchmark (a few minutes)
    python bench/run.py --quick    # a few-second smoke of the same steps, small numbers

Each server runs as a real process pinned to one core (taskset) and the load generator
(bench/loadgen.py) to another; each scenario gets a freshly started server. The scenarios:

 1. throughput: devices sending NotifyStatus deltas as fast as the server takes them,
    in frames the server processed per second;
 2. idle fleet: devices connected, one delta each per 5 s: server RSS per device
    (growth from the freshly started server) and CPU %;
 3. reconnect storm: devices dialling at once (a server restart): seconds until the last
    has been through its bootstrap (the server's two requests, Shelly.GetStatus the second);
 4. minute tick: channels active in a minute: the tick that closes the minute and writes
    its rows (bench/tick.py, in-process, on a fake clock; no bare counterpart).

shellylog runs as deployed (``twistd -n shellylog``) except for the limits that would
otherwise cut the load short: --max-rate and --max-bytes-rate (frames and bytes per minute
per device), --max-connections and --max-per-address (every device dials from 127.0.0.1)
are raised, since the benchmark measures capacity, not the limits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from autobahn import __version__ as autobahn_version  # type: ignore[attr-defined]

import twisted

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Sizes:
    throughput_devices: int
    throughput_seconds: float
    idle_devices: int
    idle_seconds: float
    storm_devices: int
    tick_channels: int
    tick_repeat: int
    warmup: float


FULL = Sizes(1000, 10.0, 10_000, 15.0, 5000, 40_000, 5, 3.0)
QUICK = Sizes(50, 0.5, 200, 0.5, 200, 4_000, 2, 0.3)

TARGETS = {
    "throughput": ">= 0.85 x bare",
    "rss": "<= 20 KiB",
    "cpu": "",
    "storm": "< 5 s",
    "tick": "< 100 ms",
}


def free_port() -> int:
    """A free port below the ephemeral range, so no client socket can be given it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(max(1024, low - 20000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def wait_listening(
    port: int, process: subprocess.Popen[bytes], log_path: str, seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path, errors="replace") as f:
                tail = f.read()[-2000:]
            raise RuntimeError(
                f"server exited with {process.returncode} before listening:\n{tail}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server not listening on {port} after {seconds} s")


def busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process C{pid} has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raise_file_limit(needed: int) -> int:
    """Raise the open-file limit (inherited by the children); return what it is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(needed, hard), max(needed, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, workdir: str) -> None:
        self.args = args
        self.sizes = sizes
        self.workdir = workdir
        self.python = sys.executable
        cores = sorted(os.sched_getaffinity(0))
        self.pinned = bool(shutil.which("taskset")) and len(cores) >= 2 and not args.no_pin
        self.server_core: int | None = cores[0] if self.pinned else None
        self.load_core: int | None = cores[1] if self.pinned else None
        #: Every run of each (scenario, server), and their medians.
        self.runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.results: dict[tuple[str, str], dict[str, Any]] = {}

    def _pin(self, core: int | None, argv: list[str]) -> list[str]:
        return ["taskset", "-c", str(core), *argv] if core is not None else argv

    def server_argv(self, kind: str, port: int, extra: int) -> list[str]:
        if kind == "bare":
            return [
                self.python, os.path.join(HERE, "bare_server.py"),
                "--port", str(port), "--backlog", str(self.args.backlog),
            ]
        twistd = os.path.join(os.path.dirname(self.python), "twistd")
        runner = (
            [twistd]
            if os.path.exists(twistd)
            else [self.python, "-c", "from twisted.scripts.twistd import run; run()"]
        )
        return [
            *runner,
            "-n",
            "--pidfile=",
            "shellylog",
            "--port", f"tcp:{port}:interface=127.0.0.1:backlog={self.args.backlog}",
            "--csv", os.path.join(self.workdir, f"shellylog-{port}.csv"),
            "--max-rate", "1000000000",
            "--max-bytes-rate", str(1 << 40),
            "--max-connections", str(extra + 1000),
            # Every simulated device dials from 127.0.0.1.
            "--max-per-address", str(extra + 1000),
        ]

    def scenario(self, name: str, kind: str, loadgen_args: list[str], devices: int) -> None:
        port = free_port()
        # The server logs to a file, as it would to the journal under systemd.
        log_path = os.path.join(self.workdir, f"{kind}-{name}.log")
        with open(log_path, "wb") as log_file:
            server = subprocess.Popen(
                self._pin(self.server_core, self.server_argv(kind, port, devices)),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        try:
            wait_listening(port, server, log_path)
            busy0, children0, server0 = busy_seconds(), children_cpu(), process_cpu(server.pid)
            t0 = time.monotonic()
            if self.args.verbose:
                print(f"  {name} / {kind} on port {port} (pid {server.pid})", file=sys.stderr)
            load = subprocess.run(
                self._pin(
                    self.load_core,
                    [
                        self.python,
                        os.path.join(HERE, "loadgen.py"),
                        name,
                        "--port", str(port),
                        "--server-pid", str(server.pid),
                        "--devices", str(devices),
                        *loadgen_args,
                    ],
                ),
                capture_output=True,
                text=True,
                timeout=600,
            )
            lines = [line for line in load.stdout.splitlines() if line.startswith("{")]
            if load.returncode != 0 or not lines:
                raise RuntimeError(
                    f"load generator failed ({load.returncode}): {load.stderr[-2000:]}"
                )
            result = json.loads(lines[-1])
            # What else ran meanwhile: all busy CPU time less the server's and the load
            # generator's. Other processes on the cores make every figure unreliable.
            elapsed = time.monotonic() - t0
            ours = (process_cpu(server.pid) - server0) + (children_cpu() - children0)
            result["foreign_cpu_pct"] = 100 * max(0.0, busy_seconds() - busy0 - ours) / elapsed
            self.record(name, kind, result)
            if self.args.verbose:
                print(f"    {lines[-1]}", file=sys.stderr)
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait()

    def record(self, name: str, kind: str, result: dict[str, Any]) -> None:
        """Keep a run's result; the table shows the median of each figure over the runs."""
        runs = self.runs.setdefault((name, kind), [])
        runs.append(result)
        merged = dict(result)
        for key, value in result.items():
            values = [r.get(key) for r in runs]
            if isinstance(value, (int, float)) and all(
                isinstance(v, (int, float)) for v in values
            ):
                merged[key] = statistics.median(values)  # type: ignore[type-var]
        self.results[name, kind] = merged

    def spread(self, name: str, kind: str, key: str, fmt: str) -> str:
        values = [r[key] for r in self.runs.get((name, kind), []) if r.get(key) is not None]
        if len(values) < 2:
            return ""
        return f"{fmt.format(min(values))}-{fmt.format(max(values))}"

    def tick(self) -> None:
        # The target's steady fleet, then one where 2% of the devices switch each minute;
        # each in a few processes, as the other scenarios run in rounds.
        runs = [("tick", "0"), ("tick_churn", "0.02")] * self.args.rounds
        for name, churn in runs:
            out = subprocess.run(
                self._pin(
                    self.server_core,
                    [
                        self.python,
                        os.path.join(HERE, "tick.py"),
                        "--channels", str(self.sizes.tick_channels),
                        "--repeat", str(self.sizes.tick_repeat),
                        "--dir", self.workdir,
                        "--churn", churn,
                    ],
                ),
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            self.record(name, "shellylog", json.loads(out.stdout.splitlines()[-1]))

    def run(self) -> None:
        s = self.sizes
        warm = ["--warmup", str(s.warmup)]
        # First, while the machine is quiet: right after the idle fleet (tens of thousands
        # of sockets torn down) this in-process timing gave 98-125 ms here, first 75-89 ms.
        self.tick()
        # Throughput and storm alternate between the servers for a few rounds, so that a
        # noisy machine (a busy neighbour of a virtual machine) shows as a spread instead of
        # tilting the ratio; the table has the medians.
        for _ in range(self.args.rounds):
            for kind in ("bare", "shellylog"):
                self.scenario(
                    "throughput", kind, [*warm, "--seconds", str(s.throughput_seconds)],
                    s.throughput_devices,
                )
                self.scenario("storm", kind, [], s.storm_devices)
        for kind in ("bare", "shellylog"):
            self.scenario(
                "idle", kind,
                [*warm, "--seconds", str(s.idle_seconds), "--settle", str(s.warmup)],
                s.idle_devices,
            )

    # -- the table -------------------------------------------------------------------

    def table(self) -> str:
        s = self.sizes
        r = self.results

        def get(name: str, kind: str, key: str) -> float | None:
            value = r.get((name, kind), {}).get(key)
            return float(value) if isinstance(value, (int, float)) else None

        rows: list[tuple[str, float | None, float | None, str, str, str]] = []

        def add(label: str, name: str, key: str, scale: float, fmt: str, target: str,
                ok: Any, paired: float | None = None) -> None:
            bare, ours = get(name, "bare", key), get(name, "shellylog", key)
            bare = bare * scale if bare is not None else None
            ours = ours * scale if ours is not None else None
            # A paired ratio (the median of the rounds' own ratios) stands for the ratio.
            value = paired if paired is not None else (
                ours / bare if ours is not None and bare else None)
            ratio = f"{value:.2f}" if value is not None else "n/a"
            verdict = "" if ok is None or ours is None else (
                "yes" if ok(ours, bare, value) else "NO")
            rows.append((label, bare, ours, ratio, target, verdict))
            formats[label] = fmt

        formats: dict[str, str] = {}
        add(f"1. throughput, {s.throughput_devices} devices (frames/s)", "throughput",
            "frames_per_s", 1, "{:,.0f}", TARGETS["throughput"],
            lambda o, b, q: q is not None and q >= 0.85, self.paired_ratio())
        add(f"2. idle {s.idle_devices} devices: RSS per device (KiB)", "idle",
            "rss_per_device", 1 / 1024, "{:,.1f}", TARGETS["rss"], lambda o, b, q: o <= 20)
        add(f"   idle {s.idle_devices} devices: server CPU (%)", "idle", "server_cpu_pct", 1,
            "{:.1f}", TARGETS["cpu"], None)
        add(f"3. storm, {s.storm_devices} devices: all bootstrapped (s)", "storm", "seconds", 1,
            "{:.2f}", TARGETS["storm"], lambda o, b, q: o < 5)
        add(f"4. minute tick, {s.tick_channels} channels (ms, median)",
            "tick", "tick_ms_median", 1, "{:.0f}", TARGETS["tick"], lambda o, b, q: o < 100)

        def cell(label: str, value: float | None) -> str:
            return "n/a" if value is None else formats[label].format(value)

        header = ("measure", "bare autobahn", "shellylog", "shellylog/bare", "target", "met")
        body = [
            (label, cell(label, bare), cell(label, ours), ratio, target, verdict)
            for label, bare, ours, ratio, target, verdict in rows
        ]
        widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(6)]
        line = "+".join("-" * (w + 2) for w in widths)
        out = [line]
        for n, row in enumerate([header, *body]):
            out.append(
                "|".join(
                    f" {str(c).ljust(w)} " if i == 0 else f" {str(c).rjust(w)} "
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
            if n == 0:
                out.append(line)
        out.append(line)
        return "\n".join(out)

    def round_ratios(self) -> list[float]:
        """shellylog / bare throughput of each round: the two ran back to back."""
        bare = self.runs.get(("throughput", "bare"), [])
        ours = self.runs.get(("throughput", "shellylog"), [])
        return [
            o["frames_per_s"] / b["frames_per_s"]
            for b, o in zip(bare, ours, strict=False)
            if b.get("frames_per_s") and o.get("frames_per_s") is not None
        ]

    def paired_ratio(self) -> float | None:
        ratios = self.round_ratios()
        return statistics.median(ratios) if ratios else None

    def notes(self) -> str:
        r = self.results
        lines = []
        rounds = len(self.runs.get(("throughput", "bare"), []))
        if rounds > 1:
            spreads = ", ".join(
                f"{name}/{kind} {self.spread(name, kind, key, fmt)}"
                for name, key, fmt in (
                    ("throughput", "frames_per_s", "{:,.0f}"), ("storm", "seconds", "{:.2f}")
                )
                for kind in ("bare", "shellylog")
            ) + f", tick {self.spread('tick', 'shellylog', 'tick_ms_median', '{:.0f}')} ms"
            lines.append(f"{rounds} rounds, min-max: {spreads}")
            lines.append(
                "throughput shellylog/bare of each round (the two back to back, so that a "
                "machine that speeds up or slows down between rounds does not tilt it): "
                + ", ".join(f"{q:.2f}" for q in self.round_ratios())
                + "; the table shows their median"
            )
        for kind in ("bare", "shellylog"):
            t = r.get(("throughput", kind), {})
            if "loadgen_cpu_pct" in t:
                lines.append(
                    f"throughput/{kind}: server CPU {t['server_cpu_pct']:.0f} %, load generator "
                    f"CPU {t['loadgen_cpu_pct']:.0f} % of its core"
                )
        lines.append(
            "The load generator sends pre-built, pre-masked frames over raw TCP, a window of "
            "32 deltas and a ping per write, and counts a window as processed when the pong "
            "comes back; the server is the bottleneck while it runs at ~100 % and the load "
            "generator stays well below."
        )
        for kind in ("bare", "shellylog"):
            i = r.get(("idle", kind), {})
            if "rss_base" in i:
                lines.append(
                    f"idle/{kind}: RSS {i['rss_base'] / 2**20:.1f} MiB at start, "
                    f"{i['rss_connected'] / 2**20:.1f} MiB with {i['devices']} devices connected, "
                    f"{i['rss_end'] / 2**20:.1f} MiB after the window; connecting took "
                    f"{i['connect_seconds']:.1f} s"
                )
            st = r.get(("storm", kind), {})
            if st.get("seconds_to_open") is not None:
                lines.append(
                    f"storm/{kind}: every handshake done after {st['seconds_to_open']:.2f} s, "
                    f"server CPU {st['server_cpu_seconds']:.2f} s, "
                    f"{st['connect_failures']:.0f} failed connects"
                )
        tick = r.get(("tick", "shellylog"), {})
        if tick:
            lines.append(
                f"tick: median {tick['tick_ms_median']:.0f} ms (worst "
                f"{tick['tick_ms_max']:.0f} ms) = close_completed "
                f"{tick['close_ms_median']:.0f} ms + write (format, write) "
                f"{tick['write_ms_median']:.0f} ms, {tick['rows']:.0f} rows; the fsync after it, "
                f"in a worker thread as in the server: "
                f"{tick.get('fsync_ms_median', float('nan')):.1f} ms"
            )
        churn = r.get(("tick_churn", "shellylog"), {})
        if churn:
            lines.append(
                f"tick with {100 * churn['churn']:.0f}% of the devices switching on or off each "
                f"minute: median {churn['tick_ms_median']:.0f} ms (worst "
                f"{churn['tick_ms_max']:.0f} ms)"
            )
        for (name, kind), result in sorted(r.items()):
            problems = {
                k: result[k] for k in ("error", "notes", "redials", "refused") if result.get(k)
            }
            if problems:
                lines.append(f"{name}/{kind}: {problems}")
        foreign = {
            f"{name}/{kind}": round(result["foreign_cpu_pct"])
            for (name, kind), result in sorted(r.items())
            if result.get("foreign_cpu_pct", 0) > 10
        }
        if foreign:
            lines.append(
                "WARNING: other processes kept the cores busy during the run (% of a core: "
                f"{foreign}); the figures are not reliable, run again on a quiet machine"
            )
        return "\n".join(f"  {line}" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--backlog", type=int, default=4096,
        help="listen backlog of both servers (4096; Twisted's default of 50 makes a storm "
        "wait on SYN retransmissions, whatever the server)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None,
        help="rounds of throughput and storm, alternating the servers (3; --quick: 1)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show each step")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    needed = max(sizes.idle_devices, sizes.storm_devices, sizes.throughput_devices) + 200
    limit = raise_file_limit(needed)
    if limit < needed:
        print(f"open-file limit {limit} is below the {needed} needed; run as root or raise "
              "it (ulimit -n)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="shellylog-bench-") as workdir:
        bench = Bench(args, sizes, workdir)
        where = (
            f"servers on core {bench.server_core}, load generator on core {bench.load_core}"
            if bench.pinned
            else "NOT pinned to cores (taskset missing or fewer than 2 CPUs)"
        )
        print(
            f"shellylog benchmark{' (--quick)' if args.quick else ''}: {where}; "
            f"listen backlog {args.backlog}; Python {platform.python_version()}, "
            f"Twisted {twisted.__version__}, Autobahn {autobahn_version}",
            flush=True,
        )
        started = time.monotonic()
        bench.run()
        print(bench.table())
        print(bench.notes())
        print(f"  ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
