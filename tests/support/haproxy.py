"""
HAProxy for tests: Debian's C{haproxy}, run on loopback in the foreground with a config
made from C{contrib/haproxy/haproxy.cfg} itself (L{local_config}: its shape, with the test's
addresses), in front of shellylog instances that listen with C{--port haproxy:tcp:0} (they
read the PROXY header HAProxy sends); and a plain HTTP request to such an instance, with the
PROXY header it expects.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import OutputProcess, wait_for
from tests.support.tools import tool

#: The example configuration the README shows.
CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "haproxy" / "haproxy.cfg"

#: The global maxconn of a test's HAProxy: the contrib file's would need more open files
#: than a test's machine may allow.
TEST_MAXCONN = 1000

#: How an instance listens behind HAProxy: the PROXY header first (send-proxy-v2).
INSTANCE_PORT = "haproxy:tcp:0:interface=127.0.0.1"


def haproxy() -> str:
    """The C{haproxy} program, or the test skips (fails in CI)."""
    return tool("haproxy")


def config_lines(text: str) -> list[str]:
    """The lines of a HAProxy config that say something: no comments, no blank lines."""
    return [line.rstrip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def local_config(text: str, listen: int, servers: list[tuple[str, int]],
                 maxconn: int = TEST_MAXCONN) -> str:
    """
    The config C{text} (C{contrib/haproxy/haproxy.cfg}'s) as a test runs it: its frontend
    bound to C{127.0.0.1:listen}, its servers replaced by C{servers} (name, port on
    127.0.0.1), its log to its output (a test's machine may have no C{/dev/log}), and its
    global C{maxconn} C{maxconn} (L{TEST_MAXCONN} unless given); every other line as it
    is. Fails if the config no longer has the lines this changes.
    """
    out: list[str] = []
    bound = placed = 0
    for line in text.splitlines():
        stripped = line.strip()
        if re.fullmatch(r"log /dev/log \S+", stripped):
            # Its log to its output, which the test keeps.
            out.append("    log stdout format raw local0")
            continue
        if re.fullmatch(r"maxconn \d+", stripped):
            # Within the open files a test's machine allows (HAProxy needs two for each).
            out.append(f"    maxconn {maxconn}")
            continue
        if stripped.startswith("bind "):
            out.append(f"    bind 127.0.0.1:{listen}")
            bound += 1
            continue
        if stripped.startswith("server "):
            if not placed:
                out.extend(f"    server {name} 127.0.0.1:{port}" for name, port in servers)
            placed += 1
            continue
        out.append(line)
    if bound != 1 or placed < 2:
        raise AssertionError(
            f"{CONTRIB}: expected one bind line and two or more server lines, found "
            f"{bound} and {placed}")
    return "\n".join(out) + "\n"


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (HAProxy's own must be in its config)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def check_config(path: str) -> tuple[int, str]:
    """C{haproxy -c -f PATH}: its exit status and what it printed."""
    out, err, code = await getProcessOutputAndValue(
        haproxy(), ["-c", "-f", path], env=dict(os.environ))
    return code, (out + err).decode("utf-8", errors="replace")


class HAProxyProcess(OutputProcess):
    """A running HAProxy: its output and its end."""

    async def stop(self) -> None:
        """SIGTERM (HAProxy's hard stop), if it still runs; wait for its end."""
        if not self.ended.called:
            assert self.transport is not None
            self.transport.signalProcess("TERM")
        await self.ended


async def start_haproxy(case: SynchronousTestCase, folder: str,
                        servers: list[tuple[str, int]]) -> tuple[HAProxyProcess, int]:
    """
    HAProxy in the foreground (C{-db}) with L{local_config} of the contrib file, checked
    first; returns it, once it accepts connections, and the port devices dial. Stopped at
    cleanup.
    """
    program = haproxy()
    listen = free_port()
    path = os.path.join(folder, "haproxy.cfg")
    with open(path, "w", encoding="utf-8") as f:
        f.write(local_config(CONTRIB.read_text(encoding="utf-8"), listen, servers))
    code, said = await check_config(path)
    if code != 0:
        raise AssertionError(f"haproxy -c refused the test's config:\n{said}")
    process = HAProxyProcess()
    reactor.spawnProcess(process, program, [program, "-db", "-f", path],
                         env=dict(os.environ), path=folder)
    case.addCleanup(process.stop)

    def accepts() -> bool:
        if process.ended.called:
            raise AssertionError(f"haproxy ended:\n{process.text()}")
        try:
            socket.create_connection(("127.0.0.1", listen), timeout=1).close()
        except OSError:
            return False
        return True

    await wait_for(accepts, 10, "haproxy to listen")
    return process, listen


def proxied_get_blocking(port: int, path: str) -> tuple[int, bytes]:
    """L{proxied_get}, blocking (for a thread, or a script such as C{bench/failover.py})."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        # PROXY protocol version 1: what the instance reads before the request.
        s.sendall(f"PROXY TCP4 127.0.0.1 127.0.0.1 1 {port}\r\n".encode()
                  + f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = bytearray()
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def proxied_get(port: int, path: str) -> tuple[int, bytes]:
    """
    C{GET path} from an instance listening with L{INSTANCE_PORT} (directly, not through
    HAProxy): the status code and body. (In a thread: a blocking socket is the simplest
    client that writes the PROXY line first.)
    """
    return await deferToThread(proxied_get_blocking, port, path)
