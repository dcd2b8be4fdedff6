"""
End to end in memory: the simulator's mixed fleet (one device of every metering family) on
the whole server, wired as C{makeService} wires it, on one L{Clock}; the CSV it writes
around noon, when the Pro 3EM's phase c exports.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict

from twisted.trial.unittest import SynchronousTestCase

from shellylog.simulate.client import DeviceClientFactory, DeviceClientProtocol
from shellylog.simulate.profiles import PROFILES
from tests.support.logs import capture_log, warnings_from
from tests.support.stack import T0, Stack

#: One profile of each family, in the order the devices are numbered.
FLEET = ["pro4pm", "pmmini", "pro3em", "proem50", "dualcover", "rgbwpm"]
#: Noon UTC of T0's day: the Pro 3EM's phase c exports around it.
NOON = T0 - T0 % 86400 + 12 * 3600
START = NOON - 15 * 60
MINUTES = 40
#: Rule 8's order of the other families.
FAMILIES = ["cct", "cover", "em", "em1", "light", "pm1", "rgb", "rgbw"]
HEADER = ("timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh,"
          "ret_energy_total_Wh")


def channel_order(cell: str) -> tuple[int, int, int, int]:
    """Rule 8's row order of a CSV C{channel} cell, worked out here from the rule's text."""
    if cell.isdigit():
        return (0, 0, int(cell), 0)
    family, number, *phase = cell.split(":")
    return (1, FAMILIES.index(family), int(number), " abc".index(phase[0] if phase else " "))


def stamp(minute: int) -> str:
    """The C{timestamp_iso} of the minute that starts C{minute} seconds after the epoch."""
    hours, rest = divmod(minute % 86400, 3600)
    return f"2027-01-15T{hours:02}:{rest // 60:02}:00+00:00"


class MixedFleetTests(SynchronousTestCase):
    """Six simulated devices, one of each family, for forty minutes, with every channel."""

    def setUp(self) -> None:
        self.events = capture_log(self)
        self.stack = Stack(self, "--channels", "*", "--columns", "ret_energy_total_Wh",
                           start=START + 5)
        self.ids: dict[str, str] = {}
        for index, name in enumerate(FLEET):
            device = PROFILES[name].create_device(index, self.stack.clock, seed=3)
            self.ids[name] = device.device_id
            factory = DeviceClientFactory("ws://127.0.0.1:5000/ws", device, self.stack.clock)
            client = factory.buildProtocol(None)
            assert isinstance(client, DeviceClientProtocol)
            connection = self.stack.harness._connect(client, client)
            self.assertTrue(connection.upgraded, name)
            factory.start_sampling()
        self.stack.advance(MINUTES * 60)
        self.status = self.stack.get_status()
        self.stack.stop()
        with open(self.stack.csv, encoding="utf-8", newline="") as f:
            self.text = f.read()
        lines = list(csv.reader(io.StringIO(self.text)))
        self.assertEqual(",".join(lines[0]), HEADER)
        self.rows = lines[1:]

    def channels_of(self, name: str) -> dict[str, list[list[str]]]:
        """The rows of the fleet's device C{name}, by channel cell."""
        rows: dict[str, list[list[str]]] = defaultdict(list)
        for row in self.rows:
            if row[1] == self.ids[name]:
                rows[row[2]].append(row)
        return rows

    def test_every_family_has_rows(self) -> None:
        logged = {name: set(self.channels_of(name)) for name in FLEET}
        self.assertLessEqual({"0", "2"}, logged["pro4pm"])
        self.assertEqual(logged["pmmini"], {"pm1:0"})
        self.assertEqual(logged["pro3em"], {"em:0", "em:0:a", "em:0:b", "em:0:c"})
        # The EM-50's switch:0 is not metered: no channel of it.
        self.assertEqual(logged["proem50"], {"em1:0", "em1:1"})
        self.assertTrue(logged["dualcover"] and logged["dualcover"] <= {"cover:0", "cover:1"})
        self.assertTrue(logged["rgbwpm"]
                        and logged["rgbwpm"] <= {f"light:{n}" for n in range(4)})

    def test_shape_and_order(self) -> None:
        """Every row whole, active, once; rows by minute, device id, then rule 8's order."""
        self.assertTrue(self.text.endswith("\n"))
        for row in self.rows:
            self.assertEqual(len(row), 8, row)
            self.assertGreater(abs(float(row[3])), 5.0, row)
        keys = [(row[0], row[1], row[2]) for row in self.rows]
        self.assertEqual([k for k, n in Counter(keys).items() if n > 1], [])
        self.assertEqual(keys, sorted(keys, key=lambda k: (k[0], k[1], channel_order(k[2]))))
        self.assertEqual({row[0][:13] for row in self.rows},
                         {"2027-01-15T11", "2027-01-15T12"})

    def test_three_phases_every_minute(self) -> None:
        """The 3EM's phases and total draw (or export) all along: a row every minute."""
        minutes = [stamp(START + 60 * m) for m in range(MINUTES + 1)]
        for channel, rows in self.channels_of("pro3em").items():
            self.assertEqual([row[0] for row in rows], minutes, channel)

    def test_export_at_noon(self) -> None:
        """Phase c exports: negative power, and its returned energy rises, minute by minute."""
        rows = self.channels_of("pro3em")["em:0:c"]
        noon = [row for row in rows if row[0] == stamp(NOON)]
        self.assertEqual(len(noon), 1)
        self.assertLess(float(noon[0][3]), -5.0)
        returned = [float(row[7]) for row in rows]
        self.assertEqual(returned, sorted(returned))
        self.assertGreater(returned[-1], returned[0])
        # The total's power (the sum of the phases) has no voltage: an empty cell.
        self.assertEqual({row[4] for row in self.channels_of("pro3em")["em:0"]}, {""})

    def test_clean_and_shown(self) -> None:
        """No warning, no rejected frame, and C{/status} names the channels as the CSV."""
        self.assertEqual(warnings_from(self.events), [])
        self.assertEqual(dict(self.stack.registry.rejected), {})
        devices = {d["device_id"]: d for d in self.status["devices"]}
        self.assertEqual(set(devices), set(self.ids.values()))
        shown = set(devices[self.ids["pro3em"]]["channels"])
        self.assertEqual(shown, {"em:0", "em:0:a", "em:0:b", "em:0:c"})
