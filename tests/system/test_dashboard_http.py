"""
The dashboard on a real C{twistd -n shellylog}, asked by real curl: health checks still get
C{ok} at C{/}, a client that asks for HTML is sent on to the page, and the JSON API answers
(C{/api/day} read in the reactor's real thread pool). And node checks that the page's
script parses.
"""

from __future__ import annotations

import json
import os
import subprocess

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase

from shellylog.dashboard.page import STATIC
from tests.support.processes import RealReactorTestCase, spawn_twistd
from tests.support.tools import tool


class CurlTests(RealReactorTestCase):
    """One real server, asked by curl as health checks and people ask it."""

    timeout = 60

    async def curl(self, *args: str) -> tuple[int, str, str]:
        """curl's exit status, output and errors for C{args}."""
        curl = tool("curl")
        out, err, code = await getProcessOutputAndValue(
            curl, ["-sS", "--max-time", "10", *args], env=os.environ, reactor=reactor)
        return code, out.decode("utf-8"), err.decode("utf-8", "replace")

    async def start(self) -> str:
        """A server with an empty log; its base URL."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        child = spawn_twistd(self, folder, ["--csv", os.path.join(folder, "log.csv")])
        port = await child.listening
        self.addCleanup(child.terminate)
        return f"http://127.0.0.1:{port}/"

    async def test_health_and_dashboard(self) -> None:
        base = await self.start()
        # curl -f, as a health check runs it: ok, as before the dashboard.
        code, out, err = await self.curl("-f", base)
        self.assertEqual((code, out, err), (0, "ok\ndevices: 0\nrows_written: 0\n", ""))
        # A client that asks for HTML, as a browser does, is sent on to the page.
        code, out, err = await self.curl("-f", "-L", "-H", "Accept: text/html", base)
        self.assertEqual((code, err), (0, ""))
        with open(os.path.join(STATIC, "index.html"), encoding="utf-8") as f:
            self.assertEqual(out, f.read())
        # The API the page reads.
        code, out, err = await self.curl("-f", base + "api/fleet")
        self.assertEqual((code, err), (0, ""))
        fleet = json.loads(out)
        self.assertEqual((fleet["tz"], fleet["devices"]), ("UTC", []))
        code, out, err = await self.curl(
            "-f", base + f"api/day?device=shellyplus1pm-aabbcc&channel=switch:0"
            f"&date={fleet['today']}")
        self.assertEqual((code, err), (0, ""))
        day = json.loads(out)
        self.assertEqual((day["date"], day["points"], day["runs"], day["energy_Wh"]),
                         (fleet["today"], {"time": [], "apower_W": []}, [], None))


class ScriptTests(SynchronousTestCase):
    """The page's script, as a JavaScript engine reads it."""

    def test_node_check(self) -> None:
        """dashboard.js parses (node --check): no syntax error reaches a browser."""
        node = tool("node", "nodejs")
        result = subprocess.run([node, "--check", os.path.join(STATIC, "dashboard.js")],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
