"""
How long a fleet takes to move when an instance behind HAProxy goes: two C{twistd -n
shellylog} instances behind a real HAProxy (the shape of C{contrib/haproxy/haproxy.cfg}, as
the tests run it), the simulator's fleet dialing HAProxy; then C{kill -9} of one (seconds
until every device is on the other), a new start of it, and a clean stop of the other
(seconds until every device is on the first again). Prints one JSON line::

    python bench/failover.py --devices 1000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.haproxy import (  # noqa: E402
    CONTRIB,
    free_port,
    haproxy,
    local_config,
    proxied_get_blocking,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000, help="simulated devices (1000)")
    args = parser.parse_args()
    devices: int = args.devices
    folder = tempfile.mkdtemp(prefix="shellylog-failover-")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ports = {"a": free_port(), "b": free_port()}

    def start(name: str) -> subprocess.Popen[bytes]:
        with open(os.path.join(folder, f"{name}.log"), "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                 "--pidfile=", "shellylog", "--port",
                 f"haproxy:tcp:{ports[name]}:interface=127.0.0.1", "--instance", name,
                 "--csv", os.path.join(folder, f"{name}.csv"), "--fsync", "off",
                 # Every simulated device comes from 127.0.0.1.
                 "--max-per-address", str(2 * devices)],
                env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)

    def connected(name: str) -> int:
        try:
            body = proxied_get_blocking(ports[name], "/status?limit=1")[1]
            count: int = json.loads(body)["server"]["connected_devices"]
        except (OSError, ValueError, KeyError):
            return 0
        return count

    def until(done: Callable[[], bool], limit: float = 120.0) -> float:
        began = time.monotonic()
        while not done():
            if time.monotonic() - began > limit:
                raise SystemExit(f"timed out after {limit} s")
            time.sleep(0.1)
        return round(time.monotonic() - began, 2)

    instances = {name: start(name) for name in ports}
    # HAProxy after both listen: its first health checks find them up.
    until(lambda: all(_listening(port) for port in ports.values()), 30)
    listen = free_port()
    config = os.path.join(folder, "haproxy.cfg")
    with open(config, "w", encoding="utf-8") as f:
        # HAProxy holds two sockets a device: room for all, and its health checks.
        f.write(local_config(CONTRIB.read_text(encoding="utf-8"), listen, list(ports.items()),
                             maxconn=devices + 100))
    with open(os.path.join(folder, "haproxy.log"), "wb") as log:
        balancer = subprocess.Popen([haproxy(), "-db", "-f", config], stdout=log,
                                    stderr=subprocess.STDOUT)
    until(lambda: _accepts(listen), 30)
    with open(os.path.join(folder, "simulator.log"), "wb") as log:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "shellylog.simulate", "--devices", str(devices),
             "--profile", "pro4pm", f"ws://127.0.0.1:{listen}/ws"],
            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    try:
        connect_s = until(lambda: connected("a") + connected("b") == devices)
        # The instance with more devices goes first; the other, then, after it is back.
        gone, other = sorted(ports, key=connected, reverse=True)
        on_killed = connected(gone)
        instances[gone].send_signal(signal.SIGKILL)
        instances[gone].wait()
        kill_s = until(lambda: connected(other) == devices)
        instances[gone] = start(gone)
        until(lambda: _listening(ports[gone]), 30)
        # Up again for HAProxy: two checks (rise 2, inter 2s).
        time.sleep(5)
        instances[other].send_signal(signal.SIGTERM)
        stop_s = until(lambda: connected(gone) == devices)
        print(json.dumps({
            "devices": devices, "connect_all_s": connect_s, "on_killed": on_killed,
            "kill9_all_moved_s": kill_s, "clean_stop_all_moved_s": stop_s,
        }))
    finally:
        for process in [simulator, balancer, *instances.values()]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [simulator, balancer, *instances.values()]:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _listening(port: int) -> bool:
    try:
        return proxied_get_blocking(port, "/")[0] in (200, 503)
    except OSError:
        return False


if __name__ == "__main__":
    main()
