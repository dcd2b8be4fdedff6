"""
End to end with real processes: C{twistd -n shellylog} and the simulator's command line
(C{python -m shellylog.simulate}) playing a mixed fleet, one device of every metering
family, over real sockets; both run ten times faster under libfaketime, around noon UTC so
that the Pro 3EM's phase c exports.
"""

from __future__ import annotations

import csv
import io
from collections import Counter

from twisted.internet.defer import Deferred, ensureDeferred

from tests.support.fleet import spawn_simulator
from tests.support.processes import RealReactorTestCase, csv_lines, spawn_twistd, wait_for
from tests.support.tools import faketime_library

FLEET = ["pro4pm", "pmmini", "pro3em", "proem50", "dualcover", "rgbwpm"]
FAKETIME = "@2026-06-01 11:57:00 x10"
HEADER = ("timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh,"
          "ret_energy_total_Wh")


class SimulatedFleetTests(RealReactorTestCase):
    """A real server, a real simulator, every family."""

    timeout = 120

    def setUp(self) -> None:
        faketime_library()
        super().setUp()

    def test_every_family_logged(self) -> Deferred[None]:
        return ensureDeferred(self._fleet())

    async def _fleet(self) -> None:
        server = spawn_twistd(
            self, self.folder,
            ["--csv", self.csv, "--channels", "*", "--columns", "ret_energy_total_Wh"],
            faketime=FAKETIME,
        )
        port = await server.listening
        simulator = spawn_simulator(self, self.folder, f"ws://127.0.0.1:{port}/ws", FLEET, 3,
                                    FAKETIME)

        def logged() -> set[str]:
            return {line.split(",")[2] for line in csv_lines(self.csv)[1:]}

        wanted = {"em:0", "em:0:a", "em:0:b", "em:0:c", "em1:0", "0"}
        # Four minutes of the server's clock: rows come at each minute's end.
        await wait_for(lambda: wanted <= logged() and len(
            {line[:16] for line in csv_lines(self.csv)[1:]}) >= 4, 60, "four minutes of rows")
        await simulator.stop()
        await server.terminate()

        with open(self.csv, encoding="utf-8", newline="") as f:
            text = f.read()
        rows = list(csv.reader(io.StringIO(text)))
        self.assertEqual(",".join(rows[0]), HEADER)
        rows = rows[1:]
        self.assertTrue(text.endswith("\n"))
        for row in rows:
            self.assertEqual(len(row), 8, row)
            self.assertGreater(abs(float(row[3])), 5.0, row)
        keys = Counter((row[0], row[1], row[2]) for row in rows)
        self.assertEqual([k for k, n in keys.items() if n > 1], [])
        # Phase c exports around noon: negative power, and returned energy in the last cell.
        exported = [row for row in rows if row[2] == "em:0:c"]
        self.assertTrue(exported)
        self.assertTrue(all(float(row[3]) < 0 and float(row[7]) > 0 for row in exported))
        # Six devices, each of its own family.
        models = {row[1].rsplit("-", 1)[0] for row in rows}
        self.assertLessEqual({"shellypro4pm", "shellypro3em", "shellyproem50"}, models)
        log = server.text()
        self.assertEqual([line for line in log.splitlines()
                          if "rejected" in line or "dropped a frame" in line], [])
        connected = [line for line in log.splitlines() if "] device " in line
                     and " connected from " in line]
        self.assertEqual(len(connected), len(FLEET), log)
        self.assertEqual([line for line in log.splitlines()
                          if any(f"#{level}]" in line for level in ("warn", "error", "critical"))],
                         [])
