"""
The per-channel series of C{/metrics} (C{shellylog_channel_*}, and
C{shellylog_device_connected}), as the service that
makeService wires serves them, after traffic through it on a L{Clock}: values, runs as the
CSV file sees them, names of every family, how long the series of a device that left stay,
and C{--channel-metrics off}.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from tests.fixtures import load_fixture
from tests.support.frames import DEVICE, fixture_device_id, fixture_status, notify, switch
from tests.support.stack import T0, Stack

POWER = "shellylog_channel_power_watts"
ACTIVE = "shellylog_channel_active"
RUN = "shellylog_channel_run_seconds"
ENERGY = "shellylog_channel_energy_watthours_total"
CHANNEL_FAMILIES = {
    "shellylog_channel_power_watts": "gauge",
    "shellylog_channel_active": "gauge",
    "shellylog_channel_run_seconds": "gauge",
    "shellylog_channel_energy_watthours": "counter",
}

Series = dict[tuple[str, str], float]


class ChannelMetricsCase(SynchronousTestCase):
    """The wired server on a clock, scraped through its own C{/metrics} registry."""

    args: tuple[str, ...] = ("--channels", "0,1")

    def setUp(self) -> None:
        self.stack = Stack(self, *self.args)

    def scrape(self) -> dict[str, Series]:
        """Every C{shellylog_channel_*} sample, by name, then by (device, channel)."""
        found: dict[str, Series] = {}
        for family in text_string_to_metric_families(self.stack.metrics_text()):
            for sample in family.samples:
                if sample.name.startswith("shellylog_channel_"):
                    key = (sample.labels["device"], sample.labels["channel"])
                    found.setdefault(sample.name, {})[key] = sample.value
        return found

    def connected(self) -> dict[str, float]:
        """C{shellylog_device_connected}, by device."""
        return {sample.labels["device"]: sample.value
                for family in text_string_to_metric_families(self.stack.metrics_text())
                for sample in family.samples if sample.name == "shellylog_device_connected"}

    def of(self, channel: str, device: str = DEVICE) -> dict[str, float]:
        """The samples of one channel, by name."""
        return {name: series[(device, channel)]
                for name, series in self.scrape().items() if (device, channel) in series}

    def report(self, client: Any, apower: float, channel: int = 0,
               energy: float = 100.0) -> None:
        self.stack.send(client, notify({f"switch:{channel}": switch(apower, 230.1, 1.9, energy)}))


class ValuesTests(ChannelMetricsCase):
    def test_nothing_before_a_device(self) -> None:
        self.assertEqual(self.scrape(), {})
        self.assertEqual(self.connected(), {})
        self.assertIn("# TYPE shellylog_channel_run_seconds gauge", self.stack.metrics_text())

    def test_running_channel(self) -> None:
        """A channel above the threshold: its power, 1, its run since its minute began."""
        client, _ = self.stack.connect()
        self.report(client, 450)  # at T0 + 5
        self.assertEqual(self.of("0"), {POWER: 450, ACTIVE: 1, RUN: 5, ENERGY: 100.0})
        self.assertEqual(self.connected(), {DEVICE: 1})

    def test_idle_channel(self) -> None:
        client, _ = self.stack.connect()
        self.report(client, 2.5, energy=87.25)
        self.assertEqual(self.of("0"), {POWER: 2.5, ACTIVE: 0, RUN: 0, ENERGY: 87.25})

    def test_every_channel_with_a_reading(self) -> None:
        client, _ = self.stack.connect()
        self.stack.send(client, notify({"switch:0": switch(450, energy=1.5),
                                        "switch:1": switch(0, energy=2.5),
                                        "switch:2": switch(900, energy=3.5)}))
        # switch:2 is not logged (--channels 0,1): no series of it.
        self.assertEqual(self.scrape(), {
            POWER: {(DEVICE, "0"): 450, (DEVICE, "1"): 0},
            ACTIVE: {(DEVICE, "0"): 1, (DEVICE, "1"): 0},
            RUN: {(DEVICE, "0"): 5, (DEVICE, "1"): 0},
            ENERGY: {(DEVICE, "0"): 1.5, (DEVICE, "1"): 2.5},
        })

    def test_missing_values_have_no_sample(self) -> None:
        """A power or an energy counter the device did not send is no sample, never 0."""
        client, _ = self.stack.connect()
        self.stack.send(client, notify({"switch:0": {"voltage": 230.1}}))
        self.assertEqual(self.of("0"), {ACTIVE: 0, RUN: 0})
        self.stack.send(client, notify({"switch:0": {"apower": 450}}))
        self.assertEqual(self.of("0"), {POWER: 450, ACTIVE: 1, RUN: 5})

    def test_each_scrape_now(self) -> None:
        """A scrape shows the values of its moment, whatever the scrape before showed."""
        client, _ = self.stack.connect()
        for apower, energy, running in [(450, 100.0, 1), (0, 100.5, 0), (450, 100.5, 1)]:
            self.report(client, apower, energy=energy)
            self.assertEqual(self.of("0"), {POWER: apower, ACTIVE: running, RUN: 5 * running,
                                            ENERGY: energy})
        self.stack.send(client, notify({"switch:0": {"apower": None, "aenergy": None}}))
        self.assertEqual(self.of("0"), {ACTIVE: 1, RUN: 5})

    def test_names_and_types(self) -> None:
        client, _ = self.stack.connect()
        self.report(client, 450)
        types = {f.name: f.type for f in text_string_to_metric_families(self.stack.metrics_text())
                 if f.name.startswith("shellylog_channel_")}
        self.assertEqual(types, CHANNEL_FAMILIES)


class RunTests(ChannelMetricsCase):
    """A run is the minutes with rows one after the other; its length counts from its first."""

    def test_run_grows_over_minutes(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        self.report(client, 450)  # T0 + 5
        stack.advance_to(T0 + 60 * 3 + 30)
        self.report(client, 460)  # still running, minutes T0 .. T0 + 3 with rows
        self.assertEqual(self.of("0")[RUN], 3 * 60 + 30)
        self.assertEqual(self.of("0")[ACTIVE], 1)

    def test_carried_minutes_count(self) -> None:
        """Minutes with a carried row (rule 1b) are minutes of the run."""
        stack = self.stack
        client, _ = stack.connect()
        self.report(client, 450)
        stack.advance_to(T0 + 60 * 4 + 10)
        self.assertEqual(self.of("0"), {POWER: 450, ACTIVE: 1, RUN: 250, ENERGY: 100.0})

    def test_stops_at_zero(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        self.report(client, 450)
        stack.advance_to(T0 + 90)
        self.report(client, 0)
        self.assertEqual(self.of("0"), {POWER: 0, ACTIVE: 0, RUN: 0, ENERGY: 100.0})

    def test_a_minute_without_a_row_ends_the_run(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        self.report(client, 450)  # minute T0
        stack.advance_to(T0 + 70)
        self.report(client, 0)  # minute T0 + 1 has its row (carried in), then idle
        stack.advance_to(T0 + 185)  # T0 + 2 has none
        self.report(client, 450)  # T0 + 3: a new run
        self.assertEqual(self.of("0")[RUN], 5)
        stack.advance_to(T0 + 250)
        self.assertEqual(self.of("0")[RUN], 70)

    def test_back_on_within_a_minute_goes_on(self) -> None:
        """Off and on again within a minute: the CSV sees no gap, nor does the run."""
        stack = self.stack
        client, _ = stack.connect()
        self.report(client, 450)
        stack.advance_to(T0 + 70)
        self.report(client, 0)
        self.assertEqual(self.of("0")[RUN], 0)
        stack.advance_to(T0 + 100)
        self.report(client, 450)
        self.assertEqual(self.of("0")[RUN], 100)

    def test_carry_running_out_ends_the_run(self) -> None:
        """Nothing received for --max-carry minutes: no more rows, so not running."""
        stack = Stack(self, "--max-carry", "2")
        client, _ = stack.connect()
        stack.send(client, notify({"switch:0": switch(450)}))  # T0 + 5
        self.stack = stack
        stack.advance_to(T0 + 150)  # minutes T0, T0 + 1 and T0 + 2 (carried)
        self.assertEqual(self.of("0")[RUN], 150)
        stack.advance_to(T0 + 190)  # T0 + 3 began more than 2 minutes after the report
        self.assertEqual(self.of("0"), {POWER: 450, ACTIVE: 0, RUN: 0})

    def test_run_across_a_restart(self) -> None:
        """A run the file shows up to the minute before a restart goes on from there."""
        header = "timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,energy_total_Wh\n"
        stack = Stack(self, csv_text=header
                      + f"2027-01-15T07:58:00+00:00,{DEVICE},0,450,,,\n"
                      + f"2027-01-15T07:59:00+00:00,{DEVICE},0,450,,,\n"
                      + f"2027-01-15T07:55:00+00:00,{DEVICE},1,450,,,\n")
        self.stack = stack
        client, _ = stack.connect()
        stack.send(client, notify({"switch:0": switch(450), "switch:1": switch(450)}))
        # The file knows the last minute of each channel only: 07:59 for switch 0.
        self.assertEqual(self.of("0")[RUN], 65)
        self.assertEqual(self.of("1")[RUN], 5)


class FamiliesTests(ChannelMetricsCase):
    """The C{channel} label is the CSV file's cell, in every family."""

    args = ("--channels", "*")

    def test_pro3em(self) -> None:
        device = fixture_device_id("pro3em-fw1.1.0.json")
        client, _ = self.stack.connect()
        self.stack.send(client, notify(fixture_status("pro3em-fw1.1.0.json"), src=device,
                                       method="NotifyFullStatus"))
        scraped = self.scrape()
        self.assertEqual(sorted(c for d, c in scraped[ACTIVE] if d == device),
                         ["em:0", "em:0:a", "em:0:b", "em:0:c"])
        status = fixture_status("pro3em-fw1.1.0.json")
        self.assertEqual(scraped[POWER][(device, "em:0")], status["em:0"]["total_act_power"])
        self.assertEqual(scraped[POWER][(device, "em:0:b")], status["em:0"]["b_act_power"])
        self.assertEqual(scraped[ENERGY][(device, "em:0")], status["emdata:0"]["total_act"])
        self.assertEqual(scraped[ENERGY][(device, "em:0:c")],
                         status["emdata:0"]["c_total_act_energy"])

    def test_pm1_and_switch(self) -> None:
        plug = "shellypmminig3-84fce63e1234"
        pm1 = load_fixture("pmminig3-pm1.json")["pm1:0"]
        client, _ = self.stack.connect()
        self.stack.send(client, notify({"pm1:0": pm1}, src=plug, method="NotifyFullStatus"))
        other, _ = self.stack.connect()
        self.report(other, 450)
        scraped = self.scrape()
        self.assertEqual(set(scraped[ACTIVE]), {(plug, "pm1:0"), (DEVICE, "0")})
        self.assertEqual(scraped[POWER][(plug, "pm1:0")], pm1["apower"])
        self.assertEqual(scraped[ENERGY][(plug, "pm1:0")], pm1["aenergy"]["total"])


class LifetimeTests(ChannelMetricsCase):
    """The series of a device that left stay --max-carry minutes, then go."""

    args = ("--max-carry", "3")

    def test_gone_after_max_carry(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        self.report(client, 450)
        stack.advance_to(T0 + 30)
        client.sendClose(code=1000)
        stack.advance(1)
        left = stack.registry.records[DEVICE].left_at
        assert left is not None
        # Idle once gone (nothing carried past a disconnect, rule 5), the rest kept.
        self.assertEqual(self.of("0"), {POWER: 450, ACTIVE: 0, RUN: 0, ENERGY: 100.0})
        stack.advance_to(left + 180)
        self.assertEqual(self.of("0")[POWER], 450)
        stack.advance(1)
        self.assertEqual(self.scrape(), {})
        # Whether it is connected is shown for as long as it is remembered.
        self.assertEqual(self.connected(), {DEVICE: 0})
        # It comes back: so do its series.
        client, _ = stack.connect()
        self.report(client, 470)
        self.assertEqual(self.of("0")[POWER], 470)
        self.assertEqual(self.of("0")[ACTIVE], 1)
        self.assertEqual(self.connected(), {DEVICE: 1})

    def test_connected_until_forgotten(self) -> None:
        stack = self.stack
        stack.registry.max_devices = 1
        first, _ = stack.connect()
        self.report(first, 450)
        self.assertEqual(self.connected(), {DEVICE: 1})
        first.sendClose(code=1000)
        stack.advance(60 * 20)
        self.assertEqual(self.connected(), {DEVICE: 0})
        other_id = "shellyplus1pm-112233445566"
        second, _ = stack.connect()
        stack.send(second, notify({"switch:0": switch(12)}, src=other_id))
        # --max-devices 1: the device that left is forgotten, and its series with it.
        self.assertEqual(self.connected(), {other_id: 1})

    def test_other_devices_stay(self) -> None:
        stack = self.stack
        other_id = "shellyplus1pm-112233445566"
        staying, _ = stack.connect()
        self.report(staying, 450)
        leaving, _ = stack.connect()
        stack.send(leaving, notify({"switch:0": switch(12)}, src=other_id))
        leaving.sendClose(code=1000)
        stack.advance(60 * 10)
        self.report(staying, 451)
        self.assertEqual(set(self.scrape()[POWER]), {(DEVICE, "0")})


class SwitchedOffTests(ChannelMetricsCase):
    """C{--channel-metrics off}: the service's /metrics has no channel series, the rest as ever."""

    args = ("--channel-metrics", "off")

    def test_none(self) -> None:
        client, _ = self.stack.connect()
        self.report(client, 450)
        self.stack.advance_to(T0 + 90)
        text = self.stack.metrics_text()
        self.assertNotIn("shellylog_channel_", text)
        self.assertNotIn("shellylog_device_", text)
        self.assertIn('shellylog_rows_written_total{kind="measured"} 1.0\n', text)
        self.assertIn("shellylog_connected_devices 1.0\n", text)

    def test_on_by_default(self) -> None:
        stack = Stack(self)
        client, _ = stack.connect()
        stack.send(client, notify({"switch:0": switch(450)}))
        self.assertIn(
            f'shellylog_channel_active{{channel="0",device="{DEVICE}"}} 1.0\n',
            stack.metrics_text(),
        )
