"""
Several instances behind HAProxy, for real: Debian's C{haproxy} with the shape of
C{contrib/haproxy/haproxy.cfg} (the file itself must pass C{haproxy -c}, and is what the
README shows), two C{twistd -n shellylog} instances behind it, and the simulator's fleet
dialing HAProxy's one address.

Each instance writes its own CSV file (L{CsvFilesTests}: the fleet's log is their union, in
which no (device, channel, minute) may appear twice), and beside it one table that both share
in a private PostgreSQL cluster (L{SharedTableTests}: the fleet's log is the table). All of
it runs on the real clock (the minute
rules need the instances and the simulator to agree on the time, and each test stays under
three minutes): every device plays a Pro 4PM whose channels 0 (a heater) and 2 (lights)
draw power all the time, so that each of them must have a row for every minute from its
first to the last.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from shellylog.pgrows import DEFAULT_TABLE
from shellylog.tracker import MINUTE
from tests.support.fleet import spawn_simulator
from tests.support.haproxy import (
    CONTRIB,
    INSTANCE_PORT,
    check_config,
    config_lines,
    haproxy,
    local_config,
    proxied_get,
    start_haproxy,
)
from tests.support.postgres import cluster
from tests.support.processes import (
    RealReactorTestCase,
    TwistdProcess,
    child_environment,
    spawn_twistd,
    wait_for,
)
from tests.support.realtime import minute_now
from tests.support.tools import missing
from tests.system.test_nginx import readme_literal_blocks

README = Path(__file__).resolve().parents[2] / "README.rst"

#: The simulated fleet: Pro 4PMs, whose channels 0 and 2 always run.
DEVICES = 8
RUNNING = ("0", "2")
SEED = 15

#: (device, channel, UTC epoch minute) of a row
Key = tuple[str, str, int]


def readme_config() -> str:
    """The README's HAProxy config: the literal block after the paragraph naming the file."""
    found = [block for paragraph, block in readme_literal_blocks(README.read_text("utf-8"))
             if "contrib/haproxy/haproxy.cfg" in paragraph]
    if len(found) != 1:
        raise AssertionError("README.rst should have exactly one literal block after a "
                             f"paragraph naming contrib/haproxy/haproxy.cfg; found {len(found)}")
    return found[0]


class ContribConfigTests(SynchronousTestCase):
    """What C{contrib/haproxy/haproxy.cfg} says, and that the README shows all of it."""

    def setUp(self) -> None:
        self.lines = [" ".join(line.split()) for line in config_lines(CONTRIB.read_text("utf-8"))]

    def test_shape(self) -> None:
        """Plain TCP to the fewest connections, the health check on GET /, a tunnel timeout."""
        for wanted in ["mode tcp", "balance leastconn", "option httpchk GET /",
                       "http-check expect status 200", "option redispatch"]:
            with self.subTest(wanted=wanted):
                self.assertIn(wanted, self.lines)
        self.assertTrue([line for line in self.lines if line.startswith("timeout tunnel ")])
        servers = [line for line in self.lines if line.startswith("server ")]
        self.assertGreaterEqual(len(servers), 2)
        (default_server,) = [line for line in self.lines if line.startswith("default-server ")]
        # Every server is checked, and is told the device's address (PROXY), checks too.
        for word in ["check", "send-proxy-v2", "check-send-proxy"]:
            self.assertIn(word, default_server.split())

    def test_readme_shows_it(self) -> None:
        """The README's block is the file without its comments: every line, in order."""
        self.assertEqual(config_lines(readme_config()),
                         config_lines(CONTRIB.read_text("utf-8")))

    def test_local_config(self) -> None:
        """What the tests run: the file with their addresses, and nothing else changed."""
        text = local_config(CONTRIB.read_text("utf-8"), 6000, [("a", 6001), ("b", 6002),
                                                                ("c", 6003)])
        lines = config_lines(text)
        self.assertIn("    bind 127.0.0.1:6000", lines)
        self.assertEqual([line.strip() for line in lines if line.strip().startswith("server ")],
                         ["server a 127.0.0.1:6001", "server b 127.0.0.1:6002",
                          "server c 127.0.0.1:6003"])
        original = config_lines(CONTRIB.read_text("utf-8"))
        kept = [line for line in original
                if not line.strip().startswith(("bind ", "server ", "log /dev/log", "maxconn "))]
        self.assertEqual([line for line in lines if line in original], kept)


class HAProxyCheckTests(TestCase):
    """C{haproxy -c}: the contrib file as it stands, and as the tests run it."""

    def setUp(self) -> None:
        haproxy()

    def test_contrib_valid(self) -> Deferred[None]:
        async def check() -> None:
            code, said = await check_config(str(CONTRIB))
            self.assertEqual(code, 0, said)

        return ensureDeferred(check())

    def test_local_valid(self) -> Deferred[None]:
        async def check() -> None:
            path = os.path.abspath(self.mktemp())
            with open(path, "w", encoding="utf-8") as f:
                f.write(local_config(CONTRIB.read_text("utf-8"), 6000, [("a", 6001),
                                                                          ("b", 6002)]))
            code, said = await check_config(path)
            self.assertEqual(code, 0, said)

        return ensureDeferred(check())


def minute_of(timestamp: str) -> int:
    """The UTC epoch minute of a row's timestamp."""
    return int(datetime.fromisoformat(timestamp).timestamp()) // MINUTE


def csv_keys(path: str) -> list[Key]:
    """The (device, channel, minute) of every complete row of the CSV file C{path}."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    # A line still being written (no newline yet) is not a row yet.
    text = text[: text.rfind("\n") + 1]
    rows = list(csv.reader(io.StringIO(text)))[1:]
    return [(row[1], row[2], minute_of(row[0])) for row in rows]


class Instance:
    """One shellylog behind HAProxy: its process, CSV file and port."""

    def __init__(self, name: str, process: TwistdProcess, csv: str) -> None:
        self.name = name
        self.process = process
        self.csv = csv
        self.port = 0

    async def connected(self) -> int:
        """Its devices now, as its C{/status} says."""
        code, body = await proxied_get(self.port, "/status")
        if code != 200:
            raise AssertionError(f"{self.name}: /status answered {code}: {body!r}")
        server = json.loads(body)["server"]
        assert server["instance"] == self.name, server
        count: int = server["connected_devices"]
        return count

    def keys(self) -> list[Key]:
        return csv_keys(self.csv)

    def rows_of(self, minute: int) -> set[tuple[str, str]]:
        """The (device, channel) of its CSV file's rows of C{minute}."""
        return {(device, channel) for device, channel, m in self.keys() if m == minute}


class FleetBehindHAProxy(RealReactorTestCase):
    """
    Two instances behind HAProxy; the simulator's fleet dials HAProxy. The scenarios, each
    checked on L{stored}: what the fleet's log holds (a subclass says where it is).
    """

    timeout = 240

    def setUp(self) -> None:
        haproxy()
        super().setUp()

    def instance_args(self, name: str) -> list[str]:
        """The options of instance C{name} besides its port, name and CSV file."""
        return []

    def stored(self, instances: tuple[Instance, ...]) -> list[Key]:
        """Every row of the fleet's log, as often as it is there."""
        raise NotImplementedError

    def complete(self, instances: tuple[Instance, ...], minute: int) -> bool:
        """Whether the fleet's log has C{minute} of every running channel of every device."""
        return len({(d, c) for d, c, m in self.stored(instances)
                    if m == minute}) == DEVICES * len(RUNNING)

    async def start(self) -> tuple[Instance, Instance]:
        """Both instances, HAProxy, the fleet; once every device is on one of them."""
        instances = []
        for name in ("a", "b"):
            path = os.path.join(self.folder, f"{name}.csv")
            process = spawn_twistd(self, self.folder, [
                "--port", INSTANCE_PORT, "--instance", name, "--csv", path,
                "--channels", "0,1,2,3", "--fsync", "off", *self.instance_args(name)])
            instances.append(Instance(name, process, path))
        for instance in instances:
            instance.port = await instance.process.listening
        _, port = await start_haproxy(self, self.folder,
                                      [(i.name, i.port) for i in instances])
        self.simulator = spawn_simulator(self, self.folder, f"ws://127.0.0.1:{port}/ws",
                                         ["pro4pm"] * DEVICES, SEED)
        self.counts: dict[str, int] = {}
        await self.until_connected(instances, DEVICES)
        a, b = instances
        return a, b

    async def until_connected(self, instances: list[Instance], total: int) -> None:
        """Until C{instances} together have C{total} devices (in C{self.counts})."""
        for _ in range(60):
            self.counts = {i.name: await i.connected() for i in instances}
            if sum(self.counts.values()) == total:
                return
            await deferLater(reactor, 0.5, lambda: None)
        raise AssertionError(f"timed out waiting for {total} devices on "
                             f"{[i.name for i in instances]}: {self.counts}")

    async def until_minute_written(self, instances: tuple[Instance, ...], minute: int,
                                   what: str) -> None:
        await wait_for(lambda: self.complete(instances, minute), 75, what)

    def check_log(self, keys: list[Key], last: int) -> dict[tuple[str, str], list[int]]:
        """
        The fleet's log: no key twice; only the running channels, of every device; each of
        them up to minute C{last}. Returns the minutes missing between each channel's
        first and last row.
        """
        counted = Counter(keys)
        self.assertEqual([key for key, n in counted.items() if n > 1], [])
        minutes: dict[tuple[str, str], set[int]] = {}
        for device, channel, minute in keys:
            minutes.setdefault((device, channel), set()).add(minute)
        self.assertEqual({channel for _, channel in minutes}, set(RUNNING))
        self.assertEqual(len(minutes), DEVICES * len(RUNNING), sorted(minutes))
        missing: dict[tuple[str, str], list[int]] = {}
        for key, seen in minutes.items():
            self.assertEqual(max(seen), last, key)
            missing[key] = sorted(set(range(min(seen), last + 1)) - seen)
        return missing

    async def kill_one(self) -> None:
        """
        C{kill -9} one instance: its devices dial again and land on the other; nothing is
        written twice, and each channel misses at most the one minute.
        """
        a, b = await self.start()
        # leastconn spreads them: both have devices.
        self.assertTrue(all(self.counts.values()), self.counts)
        # A minute both wrote, for every device each holds.
        start = minute_now()
        await self.until_minute_written((a, b), start, "both instances to write a minute")
        on_a = {device for device, _ in a.rows_of(start)}
        self.assertTrue(on_a)
        killed = minute_now()
        assert a.process.transport is not None
        a.process.transport.signalProcess("KILL")
        await a.process.ended
        await self.until_connected([b], DEVICES)
        # The minute of the kill ends and b writes it: every device, those that moved too.
        await self.until_minute_written((a, b), killed,
                                        "the other instance to write the minute of the kill")
        stopped = minute_now()
        await b.process.terminate()
        await self.simulator.stop()

        missing = self.check_log(self.stored((a, b)), stopped)
        self.assertEqual({c: m for c, m in missing.items() if len(m) > 1}, {})
        self.assertEqual({c: m for c, m in missing.items() if m and m != [killed]}, {})
        # The devices that were on a moved: b has their rows after the kill.
        moved = {device for device, _, minute in b.keys() if minute >= killed}
        self.assertLessEqual(on_a, moved)
        # a wrote nothing of the minute it was killed in (rule 6 needs a clean stop).
        self.assertEqual(a.rows_of(killed), set())
        self.assertNoWarnings(b.process)

    async def clean_stop_of_both(self) -> None:
        """
        Both instances stop cleanly (SIGTERM, at once): each writes the minute in progress
        (rule 6), so every minute measured is in the fleet's log, once.
        """
        a, b = await self.start()
        start = minute_now()
        await self.until_minute_written((a, b), start, "both instances to write a minute")
        stopped = minute_now()
        # Both at once: a device that one closes (1001) finds the other closed too, so no
        # minute is begun on one instance after the other wrote it.
        await gatherResults([ensureDeferred(a.process.terminate()),
                             ensureDeferred(b.process.terminate())])
        await self.simulator.stop()
        self.assertEqual(minute_now(), stopped, "the stop took into the next minute")

        missing = self.check_log(self.stored((a, b)), stopped)
        self.assertEqual({c: m for c, m in missing.items() if m}, {})
        for instance in (a, b):
            self.assertNoWarnings(instance.process)

    def assertNoWarnings(self, process: TwistdProcess) -> None:
        log = process.text()
        self.assertEqual([line for line in log.splitlines()
                          if any(f"#{level}]" in line for level in ("warn", "error", "critical"))],
                         [])


class CsvFilesTests(FleetBehindHAProxy):
    """Each instance its own CSV file: the fleet's log is their union."""

    def stored(self, instances: tuple[Instance, ...]) -> list[Key]:
        return [key for instance in instances for key in instance.keys()]

    def test_kill_one(self) -> Deferred[None]:
        return ensureDeferred(self.kill_one())

    def test_clean_stop_of_both(self) -> Deferred[None]:
        return ensureDeferred(self.clean_stop_of_both())


class SharedTableTests(FleetBehindHAProxy):
    """
    Both instances write one table of a private PostgreSQL cluster (C{--db}), besides their
    own CSV files: the fleet's log is the table.
    """

    def setUp(self) -> None:
        super().setUp()
        self.cluster = cluster(self)

    def instance_args(self, name: str) -> list[str]:
        return ["--db", self.cluster.dsn]

    def stored(self, instances: tuple[Instance, ...]) -> list[Key]:
        try:
            found = self.cluster.sql(f"SELECT device_id, channel, minute FROM {DEFAULT_TABLE}")
        except Exception as e:  # the table is made by the first instance to start
            if "does not exist" in str(e):
                return []
            raise
        keys = []
        for device, channel, minute in found:
            assert isinstance(device, str) and isinstance(channel, str)
            assert isinstance(minute, datetime)
            keys.append((device, channel, int(minute.timestamp()) // MINUTE))
        return keys

    def test_kill_one(self) -> Deferred[None]:
        return ensureDeferred(self.kill_one())

    def test_clean_stop_of_both(self) -> Deferred[None]:
        return ensureDeferred(self.clean_stop_of_both())

    def test_rolling_stop(self) -> Deferred[None]:
        """
        One instance stops cleanly while the other runs: it writes its minute in progress,
        its devices move to the other, which writes that minute too; the table keeps one
        row of it, and every minute until the other stops in its turn.
        """
        return ensureDeferred(self._rolling_stop())

    async def _rolling_stop(self) -> None:
        a, b = await self.start()
        self.assertTrue(all(self.counts.values()), self.counts)
        start = minute_now()
        await self.until_minute_written((a, b), start, "both instances to write a minute")
        stopped_a = minute_now()
        await a.process.terminate()
        on_a = {device for device, _ in a.rows_of(stopped_a)}
        # a wrote the minute it stopped in (rule 6), for the devices it had.
        self.assertEqual(len(on_a), self.counts["a"])
        await self.until_connected([b], DEVICES)
        # b writes that minute too, for every device: the table keeps a's rows of it.
        await wait_for(lambda: len(b.rows_of(stopped_a)) == DEVICES * len(RUNNING), 75,
                       "b to write the minute in which a stopped")
        self.assertLessEqual(on_a, {device for device, _ in b.rows_of(stopped_a)})
        stopped_b = minute_now()
        await b.process.terminate()
        await self.simulator.stop()
        self.assertEqual(minute_now(), stopped_b, "the stop took into the next minute")

        missing = self.check_log(self.stored((a, b)), stopped_b)
        self.assertEqual({c: m for c, m in missing.items() if m}, {})
        # Both files have the minute in which a stopped for a's devices; the table once.
        doubled = set(a.keys()) & set(b.keys())
        self.assertEqual({minute for _, _, minute in doubled}, {stopped_a})
        for instance in (a, b):
            self.assertNoWarnings(instance.process)


FAILOVER = Path(__file__).resolve().parents[2] / "bench" / "failover.py"


class FailoverBenchSmokeTests(SynchronousTestCase):
    """C{bench/failover.py} on a small fleet: both moves happen, and are timed."""

    def test_small_fleet(self) -> None:
        if not FAILOVER.exists():
            missing("no bench/ next to the tests")
        haproxy()
        done = subprocess.run([sys.executable, str(FAILOVER), "--devices", "20"],
                              capture_output=True, text=True, timeout=200,
                              env=child_environment())
        self.assertEqual(done.returncode, 0, done.stderr[-3000:] + done.stdout[-3000:])
        figures = json.loads(done.stdout)
        self.assertEqual(figures["devices"], 20)
        self.assertGreater(figures["on_killed"], 0)
        for name in ("connect_all_s", "kill9_all_moved_s", "clean_stop_all_moved_s"):
            self.assertLess(figures[name], 120, name)
