"""
The channels of every metering family (rule 8) and the returned-energy column (rule 9),
through the whole server (L{tests.stack.Stack}): per family, the rows of a scripted
sequence of minutes, written out in full, from real payloads (C{tests/fixtures}); and the
default configuration's file, byte for byte as the seed wrote it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from shellylog.channels import ChannelSelection, channel_key, channel_name, parse_channel_name
from shellylog.rpc import FrameError
from shellylog.status import MAX_COMPONENTS, ChannelValues, DeviceStatus
from shellylog.tap import Options
from tests.fixtures import HERE, load_fixture
from tests.support.frames import notify
from tests.support.stack import T0, Stack

METER = "shellypro3em-aabbccddeeff"
PLUG = "shellyplus1pm-aabbccddee01"
PRO4PM = "shellypro4pm-aabbccddeeff"

#: What the seed (before issue 12) wrote for L{SeedOutputTests}' traffic, byte for byte:
#: produced by running that traffic through the seed's code.
SEED_CSV = (
    'timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh\n'
    '2027-01-15T08:00:00+00:00,shellyplus1pm-aabbccddee01,0,100.0,,,110.046\n'
    '2027-01-15T08:00:00+00:00,shellypro4pm-aabbccddeeff,0,460,230.1,1.95,100.0\n'
    '2027-01-15T08:00:00+00:00,shellypro4pm-aabbccddeeff,2,12.3,121.8,0.0,0.0\n'
    '2027-01-15T08:01:00+00:00,shellyplus1pm-aabbccddee01,0,100.0,,,110.046\n'
    '2027-01-15T08:01:00+00:00,shellypro4pm-aabbccddeeff,0,460,230.1,1.95,100.0\n'
    '2027-01-15T08:01:00+00:00,shellypro4pm-aabbccddeeff,2,12.3,121.8,0.0,0.0\n'
    '2027-01-15T08:02:00+00:00,shellyplus1pm-aabbccddee01,0,100.0,,,110.046\n'
    '2027-01-15T08:02:00+00:00,shellypro4pm-aabbccddeeff,0,460,230.1,1.95,100.0\n'
    '2027-01-15T08:02:00+00:00,shellypro4pm-aabbccddeeff,2,12.3,121.8,0.0,\n'
    '2027-01-15T08:03:00+00:00,shellypro4pm-aabbccddeeff,2,12.3,121.8,0.0,\n'
    '2027-01-15T08:04:00+00:00,shellypro4pm-aabbccddeeff,0,2000.25,230.1,1.95,100.0\n'
    '2027-01-15T08:04:00+00:00,shellypro4pm-aabbccddeeff,1,300,121.8,0.0,\n'
    '2027-01-15T08:04:00+00:00,shellypro4pm-aabbccddeeff,2,12.3,121.8,0.0,\n'
    '2027-01-15T08:05:00+00:00,shellypro4pm-aabbccddeeff,0,2000.25,230.1,1.95,100.0\n'
    '2027-01-15T08:05:00+00:00,shellypro4pm-aabbccddeeff,2,12.3,121.8,0.0,\n'
)


def fragments() -> dict[str, Any]:
    """C{component-fragments.json}: components quoted in public bug reports."""
    with open(HERE / "component-fragments.json", encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def full(status: dict[str, Any], src: str = METER) -> dict[str, Any]:
    return notify(status, src=src, method="NotifyFullStatus")


def run(case: SynchronousTestCase, args: list[str],
        steps: list[tuple[float, dict[str, Any] | str]], stop: float, src: str = METER) -> str:
    """
    Start the server with C{args}, connect one device at T0 + 5 and send each frame at
    T0 + its second (a dict without a method is a NotifyStatus of C{src}), stop cleanly
    at T0 + C{stop} (rule 6), and return the CSV file's text.
    """
    stack = Stack(case, *args)
    client, _ = stack.connect()
    for at, frame in steps:
        stack.advance_to(T0 + at)
        if isinstance(frame, dict) and "method" not in frame:
            frame = notify(frame, src=src)
        stack.send(client, frame)
    stack.advance_to(T0 + stop)
    stack.stop()
    with open(stack.csv, encoding="utf-8") as f:
        return f.read()


HEADER7 = "timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh\n"
HEADER8 = HEADER7[:-1] + ",ret_energy_total_Wh\n"


class FamilyRowsTests(SynchronousTestCase):
    """
    Each family's rows for a scripted few minutes (threshold 5 W, max-carry 10, UTC; the
    minutes start at 08:00Z): which minutes get a row (rule 1), with which values (rules
    2 and 8), in which order (rule 8).
    """

    def test_em_pro3em(self) -> None:
        """
        A Pro 3EM (its real full status: C{n_current} is null, no neutral CT), then the
        real C{emdata:0}-only delta (an energy-only frame is a reading of every phase and
        of the total), an export on phase c (negative power is active), phase b dropping
        below the threshold (carried into the next minute, rule 1b), C{emdata:0} deleted
        (empty energy cells) and C{a_act_power} deleted (neither starts nor ends activity).
        """
        status = load_fixture("pro3em-fw1.1.0.json")["status"]
        self.assertIsNone(status["em:0"]["n_current"])
        delta = fragments()["pro-3em NotifyStatus delta (emdata only)"]
        text = run(self, ["--channels", "em:0", "--columns", "ret_energy_total_Wh"], [
            (5, full(status)),
            (30, delta),
            (70, {"em:0": {"c_act_power": -250.3, "b_act_power": 3.0,
                           "total_act_power": 125.2}}),
            (140, {"emdata:0": None}),
            (160, {"em:0": {"a_act_power": None}}),
        ], stop=170)
        self.assertEqual(text, HEADER8 + (
            f"2027-01-15T08:00:00+00:00,{METER},em:0,558.965,,3.856,114.53,41.71\n"
            f"2027-01-15T08:00:00+00:00,{METER},em:0:a,375.5,229.0,2.392,16.84,0.0\n"
            f"2027-01-15T08:00:00+00:00,{METER},em:0:b,170.8,229.0,1.037,16.84,0.0\n"
            f"2027-01-15T08:00:00+00:00,{METER},em:0:c,12.7,229.2,0.428,80.84,41.71\n"
            f"2027-01-15T08:01:00+00:00,{METER},em:0,125.2,,3.856,114.53,41.71\n"
            f"2027-01-15T08:01:00+00:00,{METER},em:0:a,375.5,229.0,2.392,16.84,0.0\n"
            f"2027-01-15T08:01:00+00:00,{METER},em:0:b,170.8,229.0,1.037,16.84,0.0\n"
            f"2027-01-15T08:01:00+00:00,{METER},em:0:c,-250.3,229.2,0.428,80.84,41.71\n"
            f"2027-01-15T08:02:00+00:00,{METER},em:0,125.2,,3.856,,\n"
            f"2027-01-15T08:02:00+00:00,{METER},em:0:a,375.5,229.0,2.392,,\n"
            f"2027-01-15T08:02:00+00:00,{METER},em:0:c,-250.3,229.2,0.428,,\n"
        ))

    def test_em_one_phase(self) -> None:
        """C{em:0:b} alone: the other phases and the total are not logged."""
        status = load_fixture("pro3em-fw1.1.0.json")["status"]
        text = run(self, ["--channels", "em:0:b"], [(5, full(status))], stop=50)
        self.assertEqual(text, HEADER7 + (
            f"2027-01-15T08:00:00+00:00,{METER},em:0:b,170.8,229.0,1.037,185686.89\n"
        ))

    def test_em1_pro_em50(self) -> None:
        """
        A Pro EM-50's real C{em1:1} and C{em1data:1}; an C{em1data}-only delta (a
        reading), an export with returned energy, then 4 W (idle; carried one minute).
        """
        fragment = fragments()["pro-em-50 (em1 + em1data)"]
        text = run(self, ["--channels", "em1:*", "--columns", "ret_energy_total_Wh"], [
            (5, full({"sys": {"uptime": 9}, **fragment})),
            (30, {"em1data:1": {"total_act_energy": 8400.25}}),
            (70, {"em1:1": {"act_power": -120.5, "current": 0.61},
                  "em1data:1": {"total_act_ret_energy": 1180.3}}),
            (140, {"em1:1": {"act_power": 4.0}}),
        ], stop=190)
        self.assertEqual(text, HEADER8 + (
            f"2027-01-15T08:00:00+00:00,{METER},em1:1,29.2,231.1,0.285,8400.25,1180.24\n"
            f"2027-01-15T08:01:00+00:00,{METER},em1:1,-120.5,231.1,0.61,8400.25,1180.3\n"
            f"2027-01-15T08:02:00+00:00,{METER},em1:1,-120.5,231.1,0.61,8400.25,1180.3\n"
        ))

    def test_energy_alone_makes_no_channel(self) -> None:
        """C{emdata:0} and C{em1data:1} without their C{em:0} and C{em1:1}: no channel."""
        text = run(self, ["--channels", "*"], [
            (5, full({"emdata:0": fragments()["pro-3em NotifyStatus delta (emdata only)"]
                      ["emdata:0"], "em1data:1": {"total_act_energy": 5.0}})),
            (20, {"emdata:0": {"total_act": 120.0}}),
        ], stop=130)
        self.assertEqual(text, HEADER7)

    def test_cover_plus2pm_g3(self) -> None:
        """A 2PM Gen3 in cover mode (real status, idle), moving for a while."""
        status = load_fixture("plus2pm-g3-cover-fw1.6.json")["status"]
        text = run(self, ["--channels", "cover:0"], [
            (5, full(status)),
            (20, {"cover:0": {"apower": 182.4, "current": 0.84}}),
            (90, {"cover:0": {"apower": 0.0, "aenergy": {"total": 315.1}}}),
        ], stop=185)
        self.assertEqual(text, HEADER7 + (
            f"2027-01-15T08:00:00+00:00,{METER},cover:0,182.4,219.2,0.84,314.614\n"
            f"2027-01-15T08:01:00+00:00,{METER},cover:0,182.4,219.2,0.84,314.614\n"
        ))

    def test_light_pro_dimmer(self) -> None:
        """
        A Pro Dimmer's real C{light:0}: on, an energy update (a reading), then the
        component deleted: as for a switch, a channel no longer received is carried from
        its last reading until C{--max-carry} (here past the stop, which closes 08:03).
        """
        fragment = fragments()["pro-dimmer-0/1-10v-pm (light)"]
        text = run(self, ["--channels", "light:*"], [
            (5, full(fragment)),
            (20, {"light:0": {"apower": 41.5, "current": 0.18}}),
            (45, {"light:0": {"aenergy": {"total": 165964.9, "by_minute": [1.0, 0.0, 0.0]}}}),
            (100, {"light:0": None}),
        ], stop=190)
        self.assertEqual(text, HEADER7 + "".join(
            f"2027-01-15T08:0{m}:00+00:00,{METER},light:0,41.5,236.2,0.18,165964.9\n"
            for m in range(4)
        ))

    def test_pm1_pm_mini_g3(self) -> None:
        """
        A PM Mini Gen3's real C{pm1:0} (230 W; integers as posted: C{"current": 1}), then
        exporting, then at the threshold (idle; the export carried one minute), then off.
        """
        with open(HERE / "pmminig3-pm1.json", encoding="utf-8") as f:
            pm1 = json.load(f)["pm1:0"]
        text = run(self, ["--channels", "pm1:0", "--columns", "ret_energy_total_Wh"], [
            (5, full({"pm1:0": pm1})),
            (20, {"pm1:0": {"apower": -640.0, "current": 2.8}}),
            (80, {"pm1:0": {"apower": 5, "ret_aenergy": {"total": 22.9}}}),
            (130, {"pm1:0": {"apower": 0}}),
        ], stop=185)
        self.assertEqual(text, HEADER8 + (
            f"2027-01-15T08:00:00+00:00,{METER},pm1:0,-640.0,230.9,2.8,3195.88,0\n"
            f"2027-01-15T08:01:00+00:00,{METER},pm1:0,-640.0,230.9,2.8,3195.88,0\n"
        ))

    def test_switch_pro4pm_ret_column(self) -> None:
        """A switch's returned energy (C{ret_aenergy.total}), where a device sends it."""
        status = load_fixture("pro4pm-fw1.0.3.json")["status"]
        text = run(self, ["--channels", "1", "--columns", "ret_energy_total_Wh"], [
            (5, full(status, src=PRO4PM)),
            (20, {"switch:1": {"apower": 75.5, "ret_aenergy": {"total": 3.5}}}),
        ], stop=50, src=PRO4PM)
        self.assertEqual(text, HEADER8 + (
            f"2027-01-15T08:00:00+00:00,{PRO4PM},1,75.5,121.8,0.0,0.0,3.5\n"
        ))

    def test_order_of_every_family(self) -> None:
        """
        C{*}: every family's channels, switches by number first, then the families by
        name, ids numerically, an em's total before its phases (rule 8).
        """
        status = {"switch:10": {"apower": 10}, "switch:2": {"apower": 20},
                  "pm1:0": {"apower": 30}, "em1:1": {"act_power": 50},
                  "em:0": {"a_act_power": 40, "b_act_power": 41, "c_act_power": 42,
                           "total_act_power": 123},
                  "light:0": {"apower": 60}, "cover:0": {"apower": 70},
                  "rgbw:0": {"apower": 80}, "cct:3": {"apower": 90}, "rgb:0": {"apower": 100},
                  "input:0": {"state": True}, "emdata:1": {"total_act": 5}}
        text = run(self, ["--channels", "*"], [(5, full(status))], stop=50)
        cells = [("2", 20), ("10", 10), ("cct:3", 90), ("cover:0", 70), ("em:0", 123),
                 ("em:0:a", 40), ("em:0:b", 41), ("em:0:c", 42), ("em1:1", 50),
                 ("light:0", 60), ("pm1:0", 30), ("rgb:0", 100), ("rgbw:0", 80)]
        self.assertEqual(text, HEADER7 + "".join(
            f"2027-01-15T08:00:00+00:00,{METER},{name},{power},,,\n" for name, power in cells
        ))

    def test_status_names(self) -> None:
        """C{/status} names the channels as the CSV does, in the same order."""
        stack = Stack(self, "--channels", "0,em:0,pm1:*")
        client, _ = stack.connect()
        status = load_fixture("pro3em-fw1.1.0.json")["status"]
        stack.send(client, full({**status, "switch:0": {"apower": 9}, "pm1:2": {"apower": 1}}))
        (device,) = stack.get_status()["devices"]
        self.assertEqual(list(device["channels"]),
                         ["0", "em:0", "em:0:a", "em:0:b", "em:0:c", "pm1:2"])
        self.assertEqual(device["channels"]["em:0:c"]["apower_W"], 12.7)
        self.assertIs(device["channels"]["pm1:2"]["active"], False)
        self.assertNotIn("ret_energy_total_Wh", device["channels"]["em:0"])

    def test_status_returned_energy(self) -> None:
        """With rule 9's column, C{/status} shows each channel's returned energy too."""
        stack = Stack(self, "--channels", "em:0:c", "--columns", "ret_energy_total_Wh")
        client, _ = stack.connect()
        stack.send(client, full(load_fixture("pro3em-fw1.1.0.json")["status"]))
        (device,) = stack.get_status()["devices"]
        self.assertEqual(device["channels"], {"em:0:c": {
            "apower_W": 12.7, "voltage_V": 229.2, "current_A": 0.428,
            "energy_total_Wh": 369469.8, "ret_energy_total_Wh": 985.91, "active": True,
            "last_minute_written": None}})
        self.assertEqual(stack.status()["devices"][0]["channels"], device["channels"])


class SeedOutputTests(SynchronousTestCase):
    """The default configuration writes what the seed wrote, byte for byte."""

    def test_same_bytes(self) -> None:
        """
        Two devices (a Pro 4PM and a Plus 1PM, their real full status), partial frames,
        numbers written as parsed (C{12.30}, C{1e2}), values that are no numbers, a
        deleted energy and component, carry-forward and the final minute at the stop.
        """
        stack = Stack(self)
        first, _ = stack.connect()
        second, _ = stack.connect()
        stack.send(first, full(load_fixture("pro4pm-fw1.0.3.json")["status"], src=PRO4PM))
        stack.send(second, full(load_fixture("plus1pm-fw1.1.0.json")["status"], src=PLUG))
        stack.advance_to(T0 + 20)
        stack.send(first, notify({"switch:0": {"apower": 450, "voltage": 230.1,
                                               "current": 1.95, "aenergy": {"total": 100.0}},
                                  "switch:2": {"apower": 12.30}}, src=PRO4PM))
        stack.send(second, '{"src": "' + PLUG + '", "method": "NotifyStatus", "params": '
                           '{"switch:0": {"apower": 1e2, "current": NaN, "voltage": "230"}}}')
        stack.advance_to(T0 + 50)
        stack.send(first, notify({"switch:0": {"apower": 460}, "switch:3": {"apower": 5}},
                                 src=PRO4PM))
        stack.advance_to(T0 + 150)
        stack.send(first, notify({"switch:0": {"apower": 0}, "switch:2": {"aenergy": None}},
                                 src=PRO4PM))
        stack.send(second, notify({"switch:0": {"apower": 3.5}}, src=PLUG))
        stack.advance_to(T0 + 250)
        stack.send(first, notify({"switch:1": {"apower": 300, "aenergy": {"total": 1e16}}},
                                 src=PRO4PM))
        stack.send(second, notify({"switch:0": None}, src=PLUG))
        stack.advance_to(T0 + 280)
        stack.send(first, notify({"switch:1": {"apower": 3}, "switch:0": {"apower": 2000.25}},
                                 src=PRO4PM))
        stack.advance_to(T0 + 330)
        stack.stop()
        with open(stack.csv, "rb") as f:
            self.assertEqual(f.read(), "".join(SEED_CSV).encode("ascii"))


class ResumeColumnsTests(SynchronousTestCase):
    """A file is resumed only with the columns it has (rule 9)."""

    def write(self, text: str) -> str:
        path: str = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def assertRefused(self, path: str, *args: str) -> str:
        with open(path, "rb") as f:
            before = f.read()
        stat = os.stat(path)
        options = Options()
        error = self.assertRaises(usage.UsageError, options.parseOptions,
                                  ["--csv", path, *args])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(os.stat(path).st_mtime_ns, stat.st_mtime_ns)
        return str(error)

    def test_seven_columns_refused_with_eight(self) -> None:
        path = self.write(HEADER7 + f"2027-01-15T08:00:00+00:00,{METER},em:0:a,1,,,\n")
        message = self.assertRefused(path, "--columns", "ret_energy_total_Wh")
        self.assertIn(repr(HEADER7[:-1]), message)
        self.assertIn(repr(HEADER8[:-1]), message)

    def test_eight_columns_refused_with_seven(self) -> None:
        path = self.write(HEADER8)
        message = self.assertRefused(path)
        self.assertIn(repr(HEADER7[:-1]), message)
        self.assertIn(HEADER8[:-1], message)

    def test_resume_with_names(self) -> None:
        """
        Minutes already written for named channels are not written again after a
        restart within the minute (rule 4).
        """
        written = HEADER8 + (
            f"2027-01-15T08:00:00+00:00,{METER},em:0:a,375.5,229.0,2.392,1.0,0.0\n"
            f"2027-01-15T08:00:00+00:00,{METER},em1:1,29.2,,,,\n"
        )
        stack = Stack(self, "--channels", "*", "--columns", "ret_energy_total_Wh",
                      csv_text=written)
        client, _ = stack.connect()
        stack.send(client, full({"em:0": {"a_act_power": 400, "b_act_power": 300},
                                 "em1:1": {"act_power": 20}}))
        stack.advance_to(T0 + 50)
        stack.stop()
        with open(stack.csv, encoding="utf-8") as f:
            self.assertEqual(f.read(), written + (
                f"2027-01-15T08:00:00+00:00,{METER},em:0:b,300,,,,\n"
            ))


class ChannelModelTests(SynchronousTestCase):
    """L{shellylog.channels}: keys sort as rows do, names go both ways (rule 8)."""

    NAMES = ["0", "2", "10", "999999999", "cct:0", "cover:0", "cover:3", "em:0", "em:0:a",
             "em:0:b", "em:0:c", "em:1", "em:1:a", "em:10", "em1:0", "em1:2", "light:0",
             "pm1:0", "pm1:10", "rgb:0", "rgbw:0"]

    def test_order_and_names(self) -> None:
        keys = [parse_channel_name(name) for name in self.NAMES]
        self.assertNotIn(None, keys)
        self.assertEqual(keys, sorted(k for k in keys if k is not None))
        self.assertEqual([channel_name(k) for k in keys if k is not None], self.NAMES)

    def test_switch_key_is_its_number(self) -> None:
        for n in (0, 3, 17):
            self.assertEqual(channel_key("switch", n), n)
            self.assertEqual(channel_name(n), str(n))

    def test_not_names(self) -> None:
        for name in ("", "switch:0", "em:0:d", "pm1:0:a", "emdata:0", "pm1:01", "em:0:",
                     "x:1", "1000000000", "-1", "pm1:*"):
            self.assertIsNone(parse_channel_name(name), name)

    def test_selection(self) -> None:
        selection = ChannelSelection.from_specs((1, "em:0", "pm1:*"))
        self.assertTrue(selection.selects(1))
        self.assertFalse(selection.selects(2))
        self.assertTrue(selection.selects(channel_key("em", 0, 3)))
        self.assertFalse(selection.selects(channel_key("em", 1, 0)))
        self.assertTrue(selection.selects(channel_key("pm1", 7)))
        for component, kept in (("switch:1", True), ("em:0", True), ("emdata:0", True),
                                ("pm1:7", True), ("em:1", False), ("emdata:1", False),
                                ("switch:2", False), ("sys", False), ("pm1:07", False)):
            self.assertEqual(selection.keeps(component), kept, component)


class MeterStatusTests(SynchronousTestCase):
    """L{DeviceStatus} for meters: partial deltas and deletions in each component (rule 8)."""

    def setUp(self) -> None:
        self.status = DeviceStatus(selection=ChannelSelection.from_specs(("em:0", "em1:*")))
        self.status.replace(load_fixture("pro3em-fw1.1.0.json")["status"])

    def values(self, name: str) -> ChannelValues | None:
        key = parse_channel_name(name)
        assert key is not None
        return self.status.current().get(key)

    def test_full(self) -> None:
        self.assertEqual(self.values("em:0"),
                         ChannelValues(558.965, None, 3.856, 2589773.39, 1026.61))
        self.assertEqual(self.values("em:0:c"),
                         ChannelValues(12.7, 229.2, 0.428, 369469.8, 985.91))
        self.assertEqual(sorted(self.status.meters), ["em:0", "emdata:0"])

    def test_partial_and_deleted_fields(self) -> None:
        a = self.values("em:0:a")
        self.status.merge({"em:0": {"b_act_power": None, "b_current": 2}})
        self.assertIs(self.values("em:0:a"), self.values("em:0:a"))
        self.assertEqual(self.values("em:0:a"), a)
        self.assertEqual(self.values("em:0:b"),
                         ChannelValues(None, 229.0, 2, 185686.89, 40.7))
        self.status.merge({"emdata:0": {"b_total_act_energy": None, "total_act": 1.5}})
        self.assertEqual(self.values("em:0:b"), ChannelValues(None, 229.0, 2, None, 40.7))
        self.assertEqual(self.values("em:0"), ChannelValues(558.965, None, 3.856, 1.5, 1026.61))

    def test_deleted_components(self) -> None:
        self.status.merge({"emdata:0": None})
        self.assertEqual(self.values("em:0:a"), ChannelValues(375.5, 229.0, 2.392, None, None))
        self.status.merge({"em:0": None})
        self.assertEqual(self.status.current(), {})
        # Energy alone makes no channel; the meter coming back makes them again.
        self.status.merge({"emdata:0": {"a_total_act_energy": 7}})
        self.assertEqual(self.status.current(), {})
        self.status.merge({"em:0": {"a_act_power": 10}})
        self.assertEqual(self.values("em:0:a"), ChannelValues(10, None, None, 7, None))
        self.assertEqual(len(self.status.current()), 4)

    def test_em1(self) -> None:
        self.status.merge({"em1data:1": {"total_act_energy": 2}})
        self.assertIsNone(self.values("em1:1"))
        self.status.merge({"em1:1": {"act_power": -3.5, "voltage": 230}})
        self.assertEqual(self.values("em1:1"), ChannelValues(-3.5, 230, None, 2, None))

    def test_bad_meter_component_leaves_no_trace(self) -> None:
        before = self.status.current()
        for bad in ({"emdata:0": 5}, {"em:0": [1]}, {"em1:0": "x"}):
            with self.subTest(bad=bad):
                self.assertRaises(FrameError, self.status.merge, bad)
                self.assertEqual(self.status.current(), before)

    def test_kept_components_bounded(self) -> None:
        """With a wildcard, a peer inventing components cannot make the status grow."""
        status = DeviceStatus(selection=ChannelSelection.from_specs(("pm1:*",)))
        for start in range(0, MAX_COMPONENTS, 16):
            status.merge({f"pm1:{n}": {"apower": n} for n in range(start, start + 16)})
        self.assertEqual(len(status.switches), MAX_COMPONENTS)
        self.assertRaises(FrameError, status.merge, {"pm1:1000": {"apower": 1}})
        status.merge({"pm1:3": {"apower": 9}})  # one already kept still merges
        status.merge({"pm1:1000": None, "pm1:3": None})  # deletions make room
        status.merge({"pm1:1000": {"apower": 1}})
        self.assertEqual(len(status.switches), MAX_COMPONENTS)
        self.assertEqual(len(status.current()), MAX_COMPONENTS)
