"""
The simulator's metering families after the switch: each new profile's full status has the
components and fields of a real device's payload (C{tests/fixtures/}), its deltas are
partial components as real devices send them, and a fleet mixes profiles.
"""

from __future__ import annotations

import io
import re
import sys
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from shellylog.rpc import decode_frame
from shellylog.simulate.__main__ import parse_args
from shellylog.simulate.client import Fleet
from shellylog.simulate.cover import CoverDevice
from shellylog.simulate.em import EmDevice
from shellylog.simulate.em1 import Em1Device
from shellylog.simulate.light import LightDevice
from shellylog.simulate.model import (
    DAY,
    DeviceMessage,
    MeteredDevice,
    SimulatedDevice,
    daylight,
    device_id,
    encode,
)
from shellylog.simulate.pm1 import Pm1Device
from shellylog.simulate.profiles import PROFILES
from shellylog.simulate.switch import SwitchDevice
from tests.fixtures import load_fixture

#: Midnight UTC, a minute boundary.
MIDNIGHT = 1_800_000_000 - 1_800_000_000 % DAY
NOON = MIDNIGHT + DAY // 2

NEW = ("pmmini", "pro3em", "proem50", "dualcover", "rgbwpm")

FRAGMENTS = load_fixture("component-fragments.json")
PRO3EM = load_fixture("pro3em-fw1.1.0.json")["status"]
COVER = load_fixture("plus2pm-g3-cover-fw1.6.json")["status"]
UNMETERED = load_fixture("pro3-unmetered-fw1.1.0.json")["status"]
PM1 = load_fixture("pmminig3-pm1.json")

#: For each new profile, its metering components and the real one each must look like.
REAL: dict[str, dict[str, dict[str, Any]]] = {
    "pmmini": {"pm1:0": PM1["pm1:0"]},
    "pro3em": {
        "em:0": PRO3EM["em:0"],
        "emdata:0": PRO3EM["emdata:0"],
        "temperature:0": PRO3EM["temperature:0"],
    },
    "proem50": {
        "em1:0": FRAGMENTS["pro-em-50 (em1 + em1data)"]["em1:1"],
        "em1:1": FRAGMENTS["pro-em-50 (em1 + em1data)"]["em1:1"],
        "em1data:0": FRAGMENTS["pro-em-50 (em1 + em1data)"]["em1data:1"],
        "em1data:1": FRAGMENTS["pro-em-50 (em1 + em1data)"]["em1data:1"],
        "switch:0": UNMETERED["switch:0"],
    },
    "dualcover": {"cover:0": COVER["cover:0"], "cover:1": COVER["cover:0"]},
    "rgbwpm": {
        f"light:{n}": FRAGMENTS["pro-dimmer-0/1-10v-pm (light)"]["light:0"] for n in range(4)
    },
}

#: Components whose keys a test compares in order with the real one's (the others' real
#: payloads were stored with their keys sorted, or the fragment is the device's own).
ORDERED = {"pm1", "em", "emdata", "em1", "em1data", "cover", "light"}


def kind(value: Any) -> Any:
    """What a JSON value is, to compare shapes: numbers are numbers, int or float."""
    if isinstance(value, dict):
        return {key: kind(v) for key, v in value.items()}
    if isinstance(value, list):
        return ["list", sorted({repr(kind(v)) for v in value})]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def make(name: str, at: float = NOON, uptime: float = 100.0, index: int = 1, seed: int = 0
         ) -> tuple[SimulatedDevice[Any], Clock]:
    clock = Clock()
    clock.advance(at)
    return PROFILES[name].create_device(index, clock, seed=seed, uptime=uptime), clock


def run(device: SimulatedDevice[Any], clock: Clock, seconds: int) -> list[DeviceMessage]:
    frames: list[DeviceMessage] = []
    for _ in range(seconds):
        clock.advance(1)
        frames.extend(device.sample())
    return frames


def components(frames: list[DeviceMessage], key: str) -> list[dict[str, Any]]:
    return [f["params"][key] for f in frames if key in f["params"]]


class FullStatusTests(SynchronousTestCase):
    def test_components_and_fields_of_the_real_device(self) -> None:
        """
        Each new profile's full status has its family's components, each with the fields
        of the real device's, of the same kinds (in the same order where the real payload
        shows the device's order), and shellylog's decoder reads it.
        """
        for name in NEW:
            device, _ = make(name)
            [frame] = device.connected()
            self.assertEqual(decode_frame(encode(frame)).src, device.device_id)
            status = frame["params"]
            for key, real in REAL[name].items():
                self.assertIn(key, status, name)
                self.assertEqual(kind(status[key]), kind(real), f"{name} {key}")
                if key.split(":")[0] in ORDERED and not key.startswith("emdata"):
                    self.assertEqual(list(status[key]), list(real), f"{name} {key}")
            # Nothing metering that the real device does not have.
            metering = {k for k in status if re.match(r"(pm1|em|emdata|em1|em1data|cover|"
                                                      r"light|switch|temperature):", k)}
            self.assertEqual(metering, set(REAL[name]), name)

    def test_emdata_keys_as_the_device_has_them(self) -> None:
        """C{emdata:0} in the full status: the fixture's order; in a delta, C{id} first."""
        device, clock = make("pro3em", at=NOON - 1)
        status = device.full_status()
        self.assertEqual(list(status["emdata:0"]), list(PRO3EM["emdata:0"]))
        device.connected()
        [delta] = components(run(device, clock, 2), "emdata:0")
        real = FRAGMENTS["pro-3em NotifyStatus delta (emdata only)"]["emdata:0"]
        self.assertEqual(list(delta), list(real))

    def test_identities(self) -> None:
        """Model, app and SKU as the real devices; the PM Mini Gen3 says it is Gen3."""
        expected = {
            "pmmini": ("shellypmminig3", "PMMiniG3", "S3PM-001PCEU16", 3),
            "pro3em": ("shellypro3em", "Pro3EM", "SPEM-003CEBEU", 2),
            "proem50": ("shellyproem50", "ProEM", "SPEM-002CEBEU50", 2),
            "dualcover": ("shellypro2cover", "Pro2CoverPM", "SPSH-002PE16EU", 2),
            "rgbwpm": ("shellyplusrgbwpm", "PlusRGBWPM", "SNDC-0D4P10WW", 2),
        }
        for name, (model, app, sku, gen) in expected.items():
            device, _ = make(name, index=255)
            info = device.device_info()
            self.assertEqual(device.device_id, f"{model}-0200000000ff")
            self.assertEqual((info["app"], info["model"], info["gen"]), (app, sku, gen))
        self.assertEqual(PRO3EM["em:0"]["n_current"], None)
        device, _ = make("pro3em")
        self.assertIsNone(device.full_status()["em:0"]["n_current"])

    def test_families(self) -> None:
        """Each new profile makes a device of its family, sharing the model's metering."""
        families = {
            "pmmini": Pm1Device,
            "pro3em": EmDevice,
            "proem50": Em1Device,
            "dualcover": CoverDevice,
            "rgbwpm": LightDevice,
        }
        for name, cls in families.items():
            device, _ = make(name)
            self.assertIsInstance(device, cls)
            self.assertIsInstance(device, MeteredDevice)


def check_delta(test: SynchronousTestCase, name: str, full: dict[str, Any],
                frame: DeviceMessage) -> None:
    """C{frame} is a C{NotifyStatus} of partial components of the full status C{full}."""
    test.assertEqual(frame["method"], "NotifyStatus")
    test.assertEqual(frame["dst"], "ws")
    params = dict(frame["params"])
    test.assertIsInstance(params.pop("ts"), float)
    test.assertTrue(params)
    for key, change in params.items():
        test.assertIn(key, full, f"{name}: {key}")
        test.assertEqual(change["id"], int(key.split(":")[1]))
        test.assertGreater(len(change), 1, f"{name}: an empty {key}")
        whole = kind(full[key])
        for field_name, value in change.items():
            test.assertIn(field_name, whole, f"{name}: {key}.{field_name}")
            test.assertEqual(kind(value), whole[field_name], f"{name}: {key}.{field_name}")


class DeltaTests(SynchronousTestCase):
    def test_partial_components(self) -> None:
        """
        Over ten minutes around noon, every frame of every new profile is a C{NotifyStatus}
        of partial components: known fields, of their kinds, each with its C{id}.
        """
        for name in NEW:
            device, clock = make(name, at=NOON - 300)
            full = device.connected()[0]["params"]
            frames = run(device, clock, 600)
            self.assertGreater(len(frames), 10, name)
            for frame in frames:
                check_delta(self, name, full, frame)

    def test_energy_on_its_own(self) -> None:
        """
        C{emdata}/C{em1data} come whole, once a minute, in frames with nothing else;
        C{aenergy} (with C{ret_aenergy} on a C{pm1}) likewise, each component alone.
        """
        for name, energy_keys in (("pro3em", {"emdata:0"}),
                                  ("proem50", {"em1data:0", "em1data:1"})):
            device, clock = make(name, at=NOON + 1)
            full = device.connected()[0]["params"]
            frames = run(device, clock, 180)
            energy = [f["params"] for f in frames if energy_keys & set(f["params"])]
            self.assertEqual(len(energy), 3, name)
            for params in energy:
                self.assertEqual(set(params) - {"ts"}, energy_keys)
                for key in energy_keys:
                    self.assertEqual(set(params[key]), set(full[key]))
        for name, key, fields in (("pmmini", "pm1:0", {"id", "aenergy", "ret_aenergy"}),
                                  ("dualcover", "cover:1", {"id", "aenergy"}),
                                  ("rgbwpm", "light:3", {"id", "aenergy"})):
            device, clock = make(name, at=NOON + 1)
            device.connected()
            frames = run(device, clock, 180)
            updates = [f["params"] for f in frames if "aenergy" in f["params"].get(key, {})]
            self.assertEqual(len(updates), 3, name)
            for params in updates:
                self.assertEqual(set(params), {"ts", key})
                self.assertEqual(set(params[key]), fields)
                self.assertEqual(params[key]["aenergy"]["minute_ts"] % 60, 0)

    def test_thresholds(self) -> None:
        """A power sent has moved past the threshold from the one sent before."""
        device, clock = make("pro3em", at=NOON)
        full = device.connected()[0]["params"]["em:0"]
        sent = {p: full[f"{p}_act_power"] for p in "abc"}
        for change in components(run(device, clock, 120), "em:0"):
            for p in "abc":
                if f"{p}_act_power" in change:
                    self.assertGreater(abs(change[f"{p}_act_power"] - sent[p]), 2.0)
                    sent[p] = change[f"{p}_act_power"]
                    # The phase's other power fields and the totals come with it.
                    self.assertIn(f"{p}_current", change)
                    self.assertIn("total_act_power", change)

    def test_repeatable(self) -> None:
        """The same seed gives the same frames; another seed others."""
        for name in NEW:
            runs = []
            for seed in (0, 0, 1):
                device, clock = make(name, at=NOON, seed=seed)
                runs.append([device.connected(), run(device, clock, 120)])
            self.assertEqual(runs[0], runs[1], name)
            self.assertNotEqual(runs[0], runs[2], name)


class ExportTests(SynchronousTestCase):
    def test_pro3em_exports_at_noon(self) -> None:
        """
        Phase c of the Pro 3EM exports at noon (negative power, the total too), not at
        midnight; while it does its returned energy grows, and C{emdata}'s totals are the
        sums of the phases.
        """
        self.assertEqual(daylight(NOON), 1.0)
        self.assertEqual(daylight(MIDNIGHT), 0.0)
        night, _ = make("pro3em", at=MIDNIGHT)
        em = night.full_status()["em:0"]
        self.assertGreater(min(em[f"{p}_act_power"] for p in "abc"), 0)
        device, clock = make("pro3em", at=NOON)
        status = device.connected()[0]["params"]
        em, before = status["em:0"], status["emdata:0"]
        self.assertLess(em["c_act_power"], -1000)
        self.assertLess(em["c_pf"], 0)
        self.assertGreater(em["a_act_power"], 0)
        self.assertLess(em["total_act_power"], 0)
        self.assertAlmostEqual(
            em["total_act_power"], sum(em[f"{p}_act_power"] for p in "abc"), places=1
        )
        [after] = components(run(device, clock, 60), "emdata:0")
        # About 2 kW for a minute: some 35 Wh out, on phase c only.
        returned = after["c_total_act_ret_energy"] - before["c_total_act_ret_energy"]
        self.assertTrue(30 < returned < 40, returned)
        self.assertEqual(after["c_total_act_energy"], before["c_total_act_energy"])
        self.assertEqual(after["a_total_act_ret_energy"], before["a_total_act_ret_energy"])
        self.assertGreater(after["a_total_act_energy"], before["a_total_act_energy"])
        self.assertAlmostEqual(
            after["total_act_ret"], sum(after[f"{p}_total_act_ret_energy"] for p in "abc"),
            places=1,
        )
        self.assertAlmostEqual(
            after["total_act"], sum(after[f"{p}_total_act_energy"] for p in "abc"), places=1
        )

    def test_the_meters_that_do_not_export(self) -> None:
        """The PM Mini's fridge and the EM-50's lines draw at noon too."""
        for name, key, field_name in (("pmmini", "pm1:0", "apower"),
                                      ("proem50", "em1:0", "act_power")):
            device, clock = make(name, at=NOON)
            for frame in [*device.connected(), *run(device, clock, 3600)]:
                change = frame["params"].get(key, {})
                if field_name in change:
                    self.assertGreaterEqual(change[field_name], 0.0, name)


class CoverTests(SynchronousTestCase):
    def test_covers_move_now_and_then(self) -> None:
        """
        Over three hours each cover moves a few times: it reports the start with the
        motor's power, the end at rest with none; in between at rest its power is 0.
        """
        device, clock = make("dualcover", at=MIDNIGHT)
        full = device.connected()[0]["params"]
        self.assertEqual({full[f"cover:{n}"]["apower"] for n in (0, 1)}, {0.0})
        frames = run(device, clock, 3 * 3600)
        for n in (0, 1):
            changes = [c for c in components(frames, f"cover:{n}") if "state" in c]
            starts = [c for c in changes if c["state"] in ("opening", "closing")]
            ends = [c for c in changes if c["state"] in ("open", "closed", "stopped")]
            self.assertTrue(3 <= len(starts) <= 30, len(starts))
            self.assertIn(len(ends), (len(starts), len(starts) - 1))
            # Starts and ends alternate.
            self.assertEqual([c in starts for c in changes],
                             [i % 2 == 0 for i in range(len(changes))])
            for start in starts:
                self.assertGreater(start["apower"], 50.0)
                self.assertEqual(start["last_direction"],
                                 "open" if start["state"] == "opening" else "close")
            for end in ends:
                self.assertEqual((end["apower"], end["current"]), (0.0, 0.0))
                self.assertIn(end["current_pos"], (0, 50, 100))
                if end["state"] != "stopped":
                    self.assertEqual(end["source"], "limit_switch")
        # Energy counted only while moving: about 130-180 W for 25-32 s a move.
        energy = [c["aenergy"]["total"] for c in components(frames, "cover:0") if "aenergy" in c]
        self.assertGreater(energy[-1], full["cover:0"]["aenergy"]["total"])

    def test_full_status_while_moving(self) -> None:
        """Asked while it moves, a cover shows its state and the motor's power."""
        device, clock = make("dualcover", at=MIDNIGHT)
        device.connected()
        for _ in range(3 * 3600):
            clock.advance(1)
            device.sample()
            cover = device.full_status()["cover:0"]
            if cover["state"] in ("opening", "closing"):
                self.assertGreater(cover["apower"], 0.0)
                self.assertGreater(cover["pf"], 0.0)
                return
        self.fail("cover:0 never moved")


class FleetTests(SynchronousTestCase):
    def test_profile_list(self) -> None:
        """C{--profile a,b,c}: the devices take the profiles in turn."""
        self.patch(sys, "stderr", io.StringIO())
        args = parse_args(["ws://h:5000/ws", "--devices", "6", "--profile",
                           "pro4pm,pro3em,pmmini"])
        self.assertEqual(args.profiles, ["pro4pm", "pro3em", "pmmini"])
        clock = Clock()
        fleet = Fleet.create("ws://h:5000/ws", [PROFILES[p] for p in args.profiles], 6, clock)
        devices = [f.device for f in fleet.factories]
        self.assertEqual([type(d) for d in devices],
                         [SwitchDevice, EmDevice, Pm1Device] * 2)
        self.assertEqual(len({d.device_id for d in devices}), 6)
        self.assertEqual(devices[4].device_id, device_id(PROFILES["pro3em"], 4))
        # One profile, as before.
        args = parse_args(["ws://h:5000/ws", "--profile", "pump"])
        self.assertEqual((args.profile, args.profiles), ("pump", ["pump"]))
        self.assertEqual(parse_args(["ws://h:5000/ws"]).profiles, ["pro4pm"])

    def test_unknown_profile(self) -> None:
        """An unknown name anywhere in the list is a usage error that names it."""
        for value in ("nosuch", "pro4pm,nosuch", "pro4pm,", ""):
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            with self.assertRaises(SystemExit) as caught:
                parse_args(["ws://h:5000/ws", "--profile", value])
            self.assertEqual(caught.exception.code, 2)
            self.assertIn("--profile: unknown profile", stderr.getvalue())

    def test_every_profile_listed_in_help(self) -> None:
        """The C{--profile} help names every profile."""
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        self.assertRaises(SystemExit, parse_args, ["--help"])
        text = " ".join(stdout.getvalue().split())
        for name in PROFILES:
            self.assertIn(f"{name}:", text)
