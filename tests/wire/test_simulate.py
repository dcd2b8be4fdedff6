"""
The device simulator: the frames its device model emits (on a L{Clock}, no sleeping), its
back-off, and one simulated device connected to the real server stack in memory.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
from typing import Any

from attrs import evolve
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from shellylog.rpc import decode_frame
from shellylog.simulate.__main__ import parse_args
from shellylog.simulate.client import DeviceClientFactory, DeviceClientProtocol, Fleet
from shellylog.simulate.model import (
    CURRENT_THRESHOLD,
    POWER_THRESHOLD,
    DeviceMessage,
    device_id,
    encode,
)
from shellylog.simulate.profiles import PROFILES
from shellylog.simulate.switch import (
    SWITCH_PROFILES,
    ChannelPlan,
    SwitchDevice,
    SwitchProfile,
)
from tests.support.logs import capture_log, warnings_from
from tests.support.wire import Harness

T0 = 1_800_000_000  # a minute boundary
assert T0 % 60 == 0

#: A device whose loads do not wander: every change is one the test makes.
STEADY = SwitchProfile(
    name="steady",
    model="shellyplus2pm",
    app="Plus2PM",
    sku="SNSW-102P16EU",
    channels=(
        ChannelPlan(load=600.0, pf=1.0, noise=0.0),
        ChannelPlan(load=0.0, on=False),
    ),
    pro=False,
    voltage_noise=0.0,
)


def make(
    profile: SwitchProfile = STEADY, at: float = T0 + 10, uptime: float = 5.01, index: int = 1
) -> tuple[SwitchDevice, Clock]:
    clock = Clock()
    clock.advance(at)
    return SwitchDevice.create(profile, index, clock, uptime=uptime), clock


def samples(device: SwitchDevice, clock: Clock, seconds: int) -> list[DeviceMessage]:
    """Every frame of one sample a second for C{seconds} seconds."""
    frames: list[DeviceMessage] = []
    for _ in range(seconds):
        clock.advance(1)
        frames.extend(device.sample())
    return frames


def changes(frames: list[DeviceMessage], channel: int) -> list[dict[str, Any]]:
    """The C{switch:N} objects of the C{NotifyStatus} frames, in order."""
    key = f"switch:{channel}"
    return [
        f["params"][key] for f in frames if f["method"] == "NotifyStatus" and key in f["params"]
    ]


class FullStatusTests(SynchronousTestCase):
    def test_on_connect(self) -> None:
        """
        On connect the device sends one C{NotifyFullStatus}, every component under
        C{params}, C{dst} "ws", and before the clock sync C{ts} is the uptime.
        """
        device, _ = make(uptime=5.01)
        [frame] = device.connected()
        self.assertEqual(frame["src"], "shellyplus2pm-020000000001")
        self.assertEqual(frame["dst"], "ws")
        self.assertEqual(frame["method"], "NotifyFullStatus")
        params = frame["params"]
        self.assertEqual(params["ts"], 5.01)
        self.assertIsNone(params["sys"]["unixtime"])
        self.assertEqual(params["sys"]["uptime"], 5)
        self.assertEqual(params["sys"]["mac"], "020000000001")
        # The components in the device's order: by type, then by number.
        self.assertEqual(
            list(params),
            ["ts", "ble", "cloud", "input:0", "input:1", "mqtt", "switch:0", "switch:1", "sys",
             "wifi", "ws"],
        )
        switch = params["switch:0"]
        self.assertEqual(switch["id"], 0)
        self.assertIs(switch["output"], True)
        self.assertEqual(switch["apower"], 600.0)
        self.assertEqual(set(switch["aenergy"]), {"total", "by_minute", "minute_ts"})
        self.assertEqual(len(switch["aenergy"]["by_minute"]), 3)
        self.assertEqual(params["switch:1"]["apower"], 0.0)
        self.assertIs(params["switch:1"]["output"], False)
        # A Plus device has no pf/freq; a Pro does.
        self.assertNotIn("pf", switch)
        pro, _ = make(SWITCH_PROFILES["pro4pm"])
        self.assertIn("pf", pro.connected()[0]["params"]["switch:0"])

    def test_unix_time_after_sync(self) -> None:
        """Once the device synced its clock, C{ts} and C{sys.unixtime} are Unix time."""
        device, clock = make(uptime=5.0)
        clock.advance(device.time_sync_after)
        [frame] = device.connected()
        self.assertEqual(frame["params"]["ts"], T0 + 10 + device.time_sync_after)
        self.assertEqual(frame["params"]["sys"]["unixtime"], int(clock.seconds()))

    def test_server_reads_it(self) -> None:
        """The frame is one shellylog's decoder accepts, with the device's id."""
        device, _ = make()
        frame = decode_frame(encode(device.connected()[0]))
        self.assertEqual(frame.src, device.device_id)


class DeltaTests(SynchronousTestCase):
    def test_nothing_changes_nothing_sent(self) -> None:
        """A steady load sends no delta between the minute's aenergy updates."""
        device, clock = make(at=T0 + 1)
        device.connected()
        self.assertEqual(samples(device, clock, 58), [])

    def test_only_past_threshold(self) -> None:
        """
        C{apower} is sent when it moved more than the threshold from the value last sent
        (not the last measured), and only the fields that moved are in the frame.
        """
        device, clock = make(at=T0 + 1)
        device.connected()
        channel = device.channels[0]
        channel.plan = evolve(channel.plan, load=601.5)
        self.assertEqual(samples(device, clock, 1), [])
        channel.plan = evolve(channel.plan, load=600.0 + POWER_THRESHOLD + 0.5)
        [frame] = samples(device, clock, 1)
        self.assertEqual(frame["method"], "NotifyStatus")
        self.assertEqual(frame["dst"], "ws")
        self.assertEqual(frame["params"]["ts"], 7.01)
        # 2.5 W at 230 V is 0.011 A: the current stays under its threshold.
        self.assertEqual(frame["params"]["switch:0"], {"id": 0, "apower": 602.5})
        self.assertEqual(samples(device, clock, 5), [])

    def test_current_on_its_own_threshold(self) -> None:
        """A large change sends C{apower} and C{current} together."""
        device, clock = make(at=T0 + 1)
        device.connected()
        channel = device.channels[0]
        before = channel.current
        channel.plan = evolve(channel.plan, load=700.0)
        [change] = changes(samples(device, clock, 1), 0)
        self.assertEqual(set(change), {"id", "apower", "current"})
        self.assertGreater(abs(change["current"] - before), CURRENT_THRESHOLD)

    def test_noisy_deltas_respect_threshold(self) -> None:
        """With a wandering load, every delta sent moved past the threshold."""
        device, clock = make(SWITCH_PROFILES["pro4pm"], at=T0 + 1)
        full = device.connected()[0]["params"]
        sent = {n: full[f"switch:{n}"]["apower"] for n in range(4)}
        count = 0
        for _ in range(50):
            frames = samples(device, clock, 1)
            for n in range(4):
                for change in changes(frames, n):
                    if "apower" in change:
                        self.assertGreater(abs(change["apower"] - sent[n]), POWER_THRESHOLD)
                        sent[n] = change["apower"]
                        count += 1
        # The heater on switch:0 wanders enough to report now and then.
        self.assertGreater(count, 5)


class EnergyTests(SynchronousTestCase):
    def test_aenergy_once_a_minute(self) -> None:
        """
        Just after each minute ends, each channel sends its C{aenergy} alone: C{total}
        in Wh rises, C{by_minute} holds mWh, newest first, C{minute_ts} is the new minute.
        """
        device, clock = make(at=T0, uptime=100)
        device.connected()
        total0 = device.connected()[0]["params"]["switch:0"]["aenergy"]["total"]
        frames = samples(device, clock, 60)
        # 600 W for the first minute, then 300 W for the next.
        device.channels[0].plan = evolve(device.channels[0].plan, load=300.0)
        frames += samples(device, clock, 60)
        updates = [c for c in changes(frames, 0) if "aenergy" in c]
        self.assertEqual([set(c) for c in updates], [{"id", "aenergy"}] * 2)
        first, second = (c["aenergy"] for c in updates)
        # 600 W for a minute: 10 Wh, 10000 mWh.
        self.assertEqual(first["by_minute"], [0.0, 10000.0, 0.0])
        self.assertAlmostEqual(first["total"], total0 + 10.0, places=3)
        self.assertEqual(first["minute_ts"], T0 + 60)
        # The power change showed at the next sample: 1 s of 600 W, 59 s of 300 W.
        self.assertEqual(second["by_minute"], [0.0, 5083.333, 10000.0])
        self.assertAlmostEqual(second["total"], total0 + 15.083, places=3)
        self.assertEqual(second["minute_ts"], T0 + 120)
        # The idle channel updates too, with no energy.
        idle = [c["aenergy"]["by_minute"] for c in changes(frames, 1)]
        self.assertEqual(idle, [[0.0, 0.0, 0.0]] * 2)

    def test_minute_in_progress(self) -> None:
        """C{by_minute[0]} is the minute in progress; the full status shows it too."""
        device, clock = make(at=T0, uptime=100)
        device.connected()
        clock.advance(90)
        status = device.full_status()
        self.assertEqual(status["switch:0"]["aenergy"]["by_minute"], [5000.0, 10000.0, 0.0])


class RequestTests(SynchronousTestCase):
    def test_get_status(self) -> None:
        """C{Shelly.GetStatus} (any case) is answered with the full status."""
        device, _ = make()
        for method in ("Shelly.GetStatus", "shelly.getstatus"):
            answer = device.answer(
                json.dumps({"jsonrpc": "2.0", "id": 7, "src": "shellylog", "method": method})
            )
            assert answer is not None
            self.assertEqual(
                answer, {"id": 7, "src": device.device_id, "dst": "shellylog",
                         "result": device.full_status()}
            )
        full = device.connected()[0]["params"]
        del full["ts"]
        assert answer is not None
        self.assertEqual(answer["result"], full)

    def test_unknown_method(self) -> None:
        """
        A method the device does not have gets an error object; shellylog's bootstrap
        C{NotifyStatus} request gets exactly what real firmware answers.
        """
        device, _ = make()
        request = {"jsonrpc": "2.0", "id": 1, "src": "shellylog", "method": "NotifyStatus",
                   "params": {"enable": True}}
        self.assertEqual(
            device.answer(json.dumps(request).encode()),
            {"id": 1, "src": device.device_id, "dst": "shellylog",
             "error": {"code": -114, "message": "Method NotifyStatus failed: not found"}},
        )

    def test_no_answer(self) -> None:
        """Notifications, responses and what is not JSON get no answer."""
        device, _ = make()
        for text in (
            b'{"src":"x","method":"NotifyStatus","params":{}}',
            b'{"id":3,"src":"x","result":null}',
            b"[1,2]",
            b"not json",
            b"\xff",
        ):
            self.assertIsNone(device.answer(text), text)


class PumpTests(SynchronousTestCase):
    def test_on_and_off_over_minutes(self) -> None:
        """The pump profile's switch:2 runs 3 minutes, then rests 5, and again."""
        device, clock = make(SWITCH_PROFILES["pump"], at=T0)
        device.connected()
        switched: list[tuple[float, bool, float]] = []
        for _ in range(20 * 60):
            clock.advance(1)
            for change in changes(device.sample(), 2):
                if "output" in change:
                    self.assertEqual(change["source"], "timer")
                    switched.append((clock.seconds(), change["output"], change["apower"]))
        outputs = [on for _, on, _ in switched]
        # 20 minutes are two and a half cycles of 8: about five switches, alternating.
        self.assertIn(len(outputs), (4, 5, 6))
        self.assertEqual(outputs, [outputs[0] == (n % 2 == 0) for n in range(len(outputs))])
        for (t0, on, apower), (t1, _, _) in itertools.pairwise(switched):
            self.assertEqual(t1 - t0, 180 if on else 300)
            if on:
                self.assertGreater(apower, 600)
            else:
                self.assertEqual(apower, 0.0)
        # The other channels stay off.
        self.assertEqual([c.output for c in device.channels if c.id != 2], [False] * 3)

    def test_pumps_do_not_switch_in_step(self) -> None:
        """Each device has its own phase."""
        clock = Clock()
        phases = {SwitchDevice.create(SWITCH_PROFILES["pump"], n, clock).phase for n in range(20)}
        self.assertEqual(len(phases), 20)


class IdentityTests(SynchronousTestCase):
    def test_unique_ids(self) -> None:
        """Every device number has its own id and MAC, in the device's id format."""
        ids = {device_id(PROFILES["pro4pm"], n) for n in range(100_000)}
        self.assertEqual(len(ids), 100_000)
        self.assertEqual(device_id(PROFILES["plus1pm"], 255), "shellyplus1pm-0200000000ff")

    def test_fleet(self) -> None:
        """A fleet's devices differ; a second fleet from C{first} on does not collide."""
        clock = Clock()
        a = Fleet.create("ws://127.0.0.1:5000/ws", PROFILES["pro4pm"], 5, clock)
        b = Fleet.create("ws://127.0.0.1:5000/ws", PROFILES["pro4pm"], 5, clock, first=5)
        ids = [f.device.device_id for f in a.factories + b.factories]
        self.assertEqual(len(set(ids)), 10)
        totals: set[float] = set()
        for f in a.factories:
            assert isinstance(f.device, SwitchDevice), f.device
            totals.add(f.device.channels[0].total)
        self.assertEqual(len(totals), 5)

    def test_profiles(self) -> None:
        """C{--profile} offers every family's profiles, each of which makes its devices."""
        self.assertLessEqual({"plus1pm", "pro4pm", "pump"}, set(PROFILES))
        clock = Clock()
        for name, profile in PROFILES.items():
            self.assertEqual(profile.name, name)
            device = profile.create_device(3, clock)
            if name in SWITCH_PROFILES:
                self.assertIsInstance(device, SwitchDevice)
            self.assertEqual(device.device_id, device_id(profile, 3))

    def test_arguments(self) -> None:
        self.patch(sys, "stderr", io.StringIO())
        args = parse_args(["ws://h:5000/ws", "--devices", "300", "--profile", "pump"])
        self.assertEqual((args.devices, args.profile, args.rate, args.ramp), (300, "pump", 1.0, 3))
        self.assertRaises(SystemExit, parse_args, ["http://h/"])
        self.assertRaises(SystemExit, parse_args, ["ws://h/", "--rate", "0"])


class FakeConnector:
    def __init__(self) -> None:
        self.connects = 0

    def connect(self) -> None:
        self.connects += 1

    def stopConnecting(self) -> None:
        pass


class BackOffTests(SynchronousTestCase):
    def test_reconnects_waiting_longer(self) -> None:
        """After a drop the device dials again, each failure doubling (and more) the wait."""
        device, clock = make()
        factory = DeviceClientFactory("ws://127.0.0.1:5000/ws", device, clock)
        factory.jitter = 0
        connector = FakeConnector()
        factory.clientConnectionLost(connector, None)  # type: ignore[arg-type]
        clock.advance(0.99)
        self.assertEqual(connector.connects, 0)
        clock.advance(0.01)
        self.assertEqual(connector.connects, 1)
        factory.clientConnectionFailed(connector, _failure())  # type: ignore[arg-type]
        clock.advance(2.7)
        self.assertEqual(connector.connects, 1)
        clock.advance(0.02)
        self.assertEqual(connector.connects, 2)
        for _ in range(10):
            factory.clientConnectionFailed(connector, _failure())  # type: ignore[arg-type]
            clock.advance(factory.maxDelay)
        self.assertEqual(connector.connects, 12)
        self.assertEqual(factory.delay, factory.maxDelay)

    def test_stop(self) -> None:
        device, clock = make()
        factory = DeviceClientFactory("ws://127.0.0.1:5000/ws", device, clock)
        factory.start_sampling()
        factory.stop()
        connector = FakeConnector()
        factory.clientConnectionLost(connector, None)  # type: ignore[arg-type]
        clock.advance(120)
        self.assertEqual(connector.connects, 0)


def _failure() -> Any:
    from twisted.internet.error import ConnectionRefusedError
    from twisted.python.failure import Failure

    return Failure(ConnectionRefusedError())


class AgainstServerTests(SynchronousTestCase):
    def test_readings_reach_the_sink(self) -> None:
        """
        A simulated Pro 4PM on the real site: the server bootstraps it without a
        warning, and its sink gets the device's readings, from the full status on, then
        from its deltas; the device answered both bootstrap requests.
        """
        events = capture_log(self)
        harness = Harness(self, poll_interval=60.0)
        harness.clock.advance(T0 + 1)
        device = SwitchDevice.create(SWITCH_PROFILES["pro4pm"], 7, harness.clock)
        factory = DeviceClientFactory("ws://127.0.0.1:5000/ws", device, harness.clock)
        client = factory.buildProtocol(None)
        assert isinstance(client, DeviceClientProtocol)
        connection = harness._connect(client, client)
        self.assertTrue(connection.upgraded)
        self.assertIs(factory.connection, client)
        self.assertEqual(factory.answers, 2)
        calls = harness.sink.readings_calls
        # The full status, then the answer to Shelly.GetStatus.
        self.assertEqual(len(calls), 2)
        for device_name, values in calls:
            self.assertEqual(device_name, device.device_id)
            self.assertEqual(sorted(values), [0, 1, 2, 3])
        values = calls[-1][1]
        self.assertEqual(values[0].apower, device.channels[0].apower)
        self.assertEqual(values[3].apower, device.channels[3].apower)
        self.assertEqual(values[0].energy_total, round(device.channels[0].total, 3))

        factory.start_sampling()
        connection.advance(61)
        calls = harness.sink.readings_calls
        self.assertGreater(len(calls), 4)
        last = calls[-1][1]
        self.assertEqual(last[0].apower, device.channels[0].sent_apower)
        # The minute's aenergy update came through.
        assert values[0].energy_total is not None and last[0].energy_total is not None
        self.assertGreater(last[0].energy_total, values[0].energy_total)
        self.assertEqual(warnings_from(events), [])
        self.assertEqual(dict(harness.registry.rejected), {})
        factory.stop()
        connection.flush()
