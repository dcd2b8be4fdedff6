"""
C{/metrics}: L{ShellylogCollector} read through prometheus_client, after real traffic through
the wired server on a L{Clock}. Over HTTP on the real reactor: tests/system/test_metrics_http.py.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from shellylog.metrics import ShellylogCollector
from tests.support.frames import DEVICE, notify, switch
from tests.support.stack import T0, Stack

OTHER = "shellyplus1pm-112233445566"

#: Every metric the issue names, with its type, as prometheus_client names the family.
FAMILIES = {
    "shellylog_connected_devices": "gauge",
    "shellylog_connections_opened": "counter",
    "shellylog_connections_closed": "counter",
    "shellylog_devices_forgotten": "counter",
    "shellylog_frames_received": "counter",
    "shellylog_frames_rejected": "counter",
    "shellylog_rows_written": "counter",
    "shellylog_rows_dropped": "counter",
    "shellylog_write_errors": "counter",
    "shellylog_rows_pending": "gauge",
    "shellylog_tick_duration_seconds": "gauge",
    "shellylog_last_tick_timestamp_seconds": "gauge",
}


class CollectorCase(SynchronousTestCase):
    """The wired server on a clock, its collector in a registry of its own."""

    args: tuple[str, ...] = ("--channels", "0")

    def setUp(self) -> None:
        self.stack = Stack(self, *self.args)
        self.registry = CollectorRegistry()
        self.registry.register(
            ShellylogCollector(self.stack.registry, self.stack.sink, self.stack.minutes)
        )

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def values(self, name: str, label: str) -> dict[str, float]:
        """Every sample of C{name}, by the value of its one label."""
        return {
            sample.labels[label]: sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == name
        }

    def report(self, client: Any, apower: float = 450) -> None:
        self.stack.send(client, notify({"switch:0": switch(apower, 230.1, 1.9, 100.0)}))


class ConnectionMetricsTests(CollectorCase):
    def test_nothing_yet(self) -> None:
        self.assertEqual(self.value("shellylog_connected_devices"), 0)
        self.assertEqual(self.value("shellylog_connections_opened_total"), 0)
        self.assertEqual(self.value("shellylog_connections_closed_total"), 0)
        self.assertEqual(self.values("shellylog_frames_received_total", "method"), {})
        self.assertEqual(self.values("shellylog_frames_rejected_total", "reason"), {})

    def test_opened_and_closed(self) -> None:
        stack = self.stack
        first, _ = stack.connect()
        self.report(first)
        second, _ = stack.connect()
        stack.send(second, notify({"switch:0": {"apower": 1}}, src=OTHER))
        self.assertEqual(self.value("shellylog_connections_opened_total"), 2)
        self.assertEqual(self.value("shellylog_connections_closed_total"), 0)
        self.assertEqual(self.value("shellylog_connected_devices"), 2)
        first.sendClose(code=1000)
        stack.advance(2)
        self.assertEqual(self.value("shellylog_connections_opened_total"), 2)
        self.assertEqual(self.value("shellylog_connections_closed_total"), 1)
        self.assertEqual(self.value("shellylog_connected_devices"), 1)

    def test_devices_forgotten(self) -> None:
        self.assertEqual(self.value("shellylog_devices_forgotten_total"), 0)
        self.stack.registry.max_devices = 1
        for device_id in (DEVICE, OTHER):
            client, _ = self.stack.connect()
            self.stack.send(client, notify({"switch:0": {"apower": 1}}, src=device_id))
            client.sendClose(code=1000)
            self.stack.harness.flush()
        self.assertEqual(self.value("shellylog_devices_forgotten_total"), 1)

    def test_open_connection_without_a_device_is_not_a_device(self) -> None:
        """A WebSocket that never said which device it is: opened, not connected."""
        self.stack.connect()
        self.assertEqual(self.value("shellylog_connections_opened_total"), 1)
        self.assertEqual(self.value("shellylog_connected_devices"), 0)


class FrameMetricsTests(CollectorCase):
    def test_received_by_method(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        requests = {m["method"]: m["id"] for m in client.json_messages()}
        self.assertEqual(set(requests), {"NotifyStatus", "Shelly.GetStatus"})
        stack.send(
            client,
            notify({"switch:0": switch(450)}, method="NotifyFullStatus"),
            notify({"switch:0": {"apower": 451}}),
            notify({"switch:0": {"apower": 452}}),
            notify({"switch:0": {"apower": 453}}),
            notify({"events": [{"component": "input:0", "event": "single_push"}]},
                   method="NotifyEvent"),
            notify({}, method="Something.New"),
            # The answer to Shelly.GetStatus, and the error for the NotifyStatus request.
            {"id": requests["Shelly.GetStatus"], "src": DEVICE, "dst": "shellylog",
             "result": {"switch:0": switch(454)}},
            {"id": requests["NotifyStatus"], "src": DEVICE, "dst": "shellylog",
             "error": {"code": 404, "message": "No handler for NotifyStatus"}},
        )
        self.assertEqual(self.values("shellylog_frames_received_total", "method"), {
            "notifyfullstatus": 1,
            "notifystatus": 3,
            "notifyevent": 1,
            "other": 1,
            "response": 1,
            "error": 1,
        })
        self.assertEqual(self.values("shellylog_frames_rejected_total", "reason"), {})

    def test_rejected_by_reason(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        self.report(client)
        stack.send(client, "{not json", "{not json", "[1, 2]",
                   notify({"switch:0": {"apower": 1}}, src=OTHER))
        client.sendMessage(b"\x00\x01", isBinary=True)
        stack.harness.flush()
        self.assertEqual(self.values("shellylog_frames_rejected_total", "reason"), {
            "not_json": 2, "not_object": 1, "src_mismatch": 1, "binary": 1,
        })
        # Only the frames that were used are counted as received.
        self.assertEqual(self.values("shellylog_frames_received_total", "method"),
                         {"notifystatus": 1})


class RefusedMetricsTests(CollectorCase):
    args = ("--token", "s3cret")

    def test_bad_token_counted(self) -> None:
        client, _ = self.stack.connect("/ws?token=wrong")
        self.assertFalse(client.opened)
        self.assertEqual(self.values("shellylog_frames_rejected_total", "reason"),
                         {"bad_token": 1})
        # A refused handshake is no connection opened or closed.
        self.assertEqual(self.value("shellylog_connections_opened_total"), 0)
        self.assertEqual(self.value("shellylog_connections_closed_total"), 0)


class RowMetricsTests(CollectorCase):
    def test_measured_and_carried(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        self.report(client)  # at T0 + 5
        stack.advance_to(T0 + 60)  # minute T0: measured
        self.assertEqual(self.values("shellylog_rows_written_total", "kind"),
                         {"measured": 1, "carried": 0})
        stack.advance(60)  # minute T0 + 1: carried, nothing came in it
        self.assertEqual(self.values("shellylog_rows_written_total", "kind"),
                         {"measured": 1, "carried": 1})
        self.report(client, 500)
        stack.advance(60)
        self.assertEqual(self.values("shellylog_rows_written_total", "kind"),
                         {"measured": 2, "carried": 1})
        self.assertEqual(self.value("shellylog_rows_pending"), 0)
        self.assertEqual(self.value("shellylog_write_errors_total"), 0)
        self.assertEqual(self.value("shellylog_rows_dropped_total"), 0)

    def test_write_errors_and_pending(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        self.report(client)
        stack.fail_writes()
        stack.advance_to(T0 + 60)
        self.assertEqual(self.value("shellylog_write_errors_total"), 1)
        self.assertEqual(self.value("shellylog_rows_pending"), 1)
        stack.advance(60)
        self.assertEqual(self.value("shellylog_write_errors_total"), 2)
        self.assertEqual(self.value("shellylog_rows_pending"), 2)
        self.assertEqual(self.values("shellylog_rows_written_total", "kind"),
                         {"measured": 0, "carried": 0})
        stack.disk_full = False
        stack.advance(60)
        self.assertEqual(self.value("shellylog_write_errors_total"), 2)
        self.assertEqual(self.value("shellylog_rows_pending"), 0)
        self.assertEqual(self.values("shellylog_rows_written_total", "kind"),
                         {"measured": 1, "carried": 2})

    def test_dropped(self) -> None:
        self.stack.sink.max_pending = 1
        client, _ = self.stack.connect()
        self.report(client)
        self.stack.fail_writes()
        self.stack.advance_to(T0 + 120)
        self.assertEqual(self.value("shellylog_rows_pending"), 1)
        self.assertEqual(self.value("shellylog_rows_dropped_total"), 1)


class TickMetricsTests(CollectorCase):
    def test_before_the_first_tick(self) -> None:
        self.assertEqual(self.value("shellylog_tick_duration_seconds"), 0)
        self.assertEqual(self.value("shellylog_last_tick_timestamp_seconds"), 0)

    def test_duration_and_time(self) -> None:
        stack = self.stack
        client, _ = stack.connect()
        self.report(client)
        stack.advance_to(T0 + 59)
        # The tick's two readings of the processor clock: 0.25 s apart.
        readings = iter([1000.0, 1000.25])
        real = time.perf_counter
        # shellylog.minutes reads time.perf_counter at each call.
        self.patch(time, "perf_counter", lambda: next(readings, real()))
        stack.advance(1)
        self.assertEqual(self.value("shellylog_last_tick_timestamp_seconds"), T0 + 60)
        self.assertEqual(self.value("shellylog_tick_duration_seconds"), 0.25)
        self.assertEqual(self.values("shellylog_rows_written_total", "kind")["measured"], 1)
        self.patch(time, "perf_counter", real)
        stack.advance(60)
        self.assertEqual(self.value("shellylog_last_tick_timestamp_seconds"), T0 + 120)
        duration = self.value("shellylog_tick_duration_seconds")
        assert duration is not None
        self.assertGreaterEqual(duration, 0)
        self.assertLess(duration, 5)
        self.assertNotEqual(duration, 0.25)


class NamingTests(CollectorCase):
    def test_every_metric_of_the_issue(self) -> None:
        types = {family.name: family.type for family in self.registry.collect()}
        self.assertEqual(types, FAMILIES)

    def test_names(self) -> None:
        """Prefixed C{shellylog_}; counters end in C{_total}; times are in seconds."""
        client, _ = self.stack.connect()
        self.report(client)
        self.stack.send(client, "{not json")
        self.stack.advance_to(T0 + 60)
        for family in self.registry.collect():
            self.assertTrue(family.name.startswith("shellylog_"), family.name)
            self.assertTrue(family.samples, family.name)
            for sample in family.samples:
                self.assertTrue(sample.name.startswith("shellylog_"), sample.name)
                if family.type == "counter":
                    self.assertTrue(sample.name.endswith("_total"), sample.name)
                else:
                    self.assertFalse(sample.name.endswith("_total"), sample.name)
        self.assertEqual(
            sorted(name for name in FAMILIES if "tick" in name),
            ["shellylog_last_tick_timestamp_seconds", "shellylog_tick_duration_seconds"],
        )

    def test_text_format_parses(self) -> None:
        """What /metrics serves: every family with its help, and it parses back."""
        client, _ = self.stack.connect()
        self.report(client)
        self.stack.advance_to(T0 + 60)
        text = generate_latest(self.registry).decode("utf-8")
        parsed = {f.name: f for f in text_string_to_metric_families(text)}
        self.assertEqual({name: f.type for name, f in parsed.items()}, FAMILIES)
        for name in FAMILIES:
            self.assertIn(f"# HELP {name}", text)
        self.assertIn("shellylog_connected_devices 1.0\n", text)
        self.assertIn('shellylog_rows_written_total{kind="measured"} 1.0\n', text)
        self.assertIn('shellylog_frames_received_total{method="notifystatus"} 1.0\n', text)


class InstanceTests(SynchronousTestCase):
    """C{shellylog_instance_info}: which instance (C{--instance}) a scrape reached."""

    def test_info(self) -> None:
        """An info metric: the name in a label of its own, the value 1, on /metrics."""
        stack = Stack(self, "--instance", "box-1")
        families = {f.name: f for f in text_string_to_metric_families(stack.metrics_text())}
        info = families["shellylog_instance_info"]
        self.assertEqual(info.type, "gauge")
        self.assertEqual([(s.name, s.labels, s.value) for s in info.samples],
                         [("shellylog_instance_info", {"name": "box-1"}, 1.0)])

    def test_not_the_instance_label(self) -> None:
        """
        Not C{instance}: Prometheus sets that label to the scrape target, and would rename
        this one C{exported_instance}.
        """
        stack = Stack(self, "--instance", "box-1")
        text = stack.metrics_text()
        self.assertIn('shellylog_instance_info{name="box-1"} 1.0', text)
        self.assertNotIn("instance=", text)

    def test_without_a_name(self) -> None:
        """A collector told no name has no info metric (as the benchmark builds it)."""
        stack = Stack(self)
        registry = CollectorRegistry()
        registry.register(ShellylogCollector(stack.registry, stack.sink, stack.minutes))
        self.assertNotIn("shellylog_instance_info",
                         {family.name for family in registry.collect()})
