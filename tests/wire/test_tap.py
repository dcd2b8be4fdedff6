"""
Tests for L{shellylog.tap}: the C{twistd shellylog} command line and the service it builds.
"""

from __future__ import annotations

import inspect
import json
import os
import resource
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import autobahn.websocket.protocol as autobahn_protocol
from autobahn.websocket.protocol import Timings
from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, LogLevel, formatEvent
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase
from twisted.web.server import Site
from zope.interface import implementer

from shellylog import tap
from shellylog.admission import Admission, TokenRule
from shellylog.config import Config, Limits
from shellylog.csvlog import CsvSink
from shellylog.metrics import ShellylogCollector
from shellylog.minutes import MinuteService
from shellylog.tap import Options, makeService
from shellylog.threads import WebThreads
from tests.support.frames import notify, switch
from tests.support.logs import capture_log
from tests.support.stack import Stack
from tests.support.wire import raw_upgrade


def parse(*args: str) -> Options:
    """Options parsed from C{args}, as twistd would after the C{shellylog} sub-command."""
    options = Options()
    options.parseOptions(list(args))
    return options


def rejected_in_metrics(stack: Stack) -> dict[str, float]:
    """C{shellylog_frames_rejected_total} of C{stack}, by reason, as /metrics serves it."""
    registry = CollectorRegistry()
    registry.register(ShellylogCollector(stack.registry, stack.sink, stack.minutes))
    return {sample.labels["reason"]: sample.value for family in registry.collect()
            for sample in family.samples if sample.name == "shellylog_frames_rejected_total"}


class OptionsDefaultsTests(TestCase):
    """Without arguments every option has its documented, already converted default."""

    def setUp(self) -> None:
        self.options = parse()

    def test_port(self) -> None:
        self.assertEqual(self.options["port"], "tcp:5000")

    def test_csv(self) -> None:
        """The default file name is made absolute against the working directory."""
        csv = self.options["csv"]
        self.assertTrue(os.path.isabs(csv))
        self.assertEqual(csv, os.path.join(os.getcwd(), "shelly_ws_log.csv"))

    def test_channels(self) -> None:
        self.assertEqual(self.options["channels"], (0, 1, 2, 3))

    def test_threshold(self) -> None:
        self.assertEqual(self.options["threshold"], 5.0)
        self.assertIsInstance(self.options["threshold"], float)

    def test_tz(self) -> None:
        self.assertEqual(self.options["tz"], "UTC")
        self.assertEqual(self.options.config.zone, ZoneInfo("UTC"))

    def test_max_carry(self) -> None:
        self.assertEqual(self.options["max-carry"], 10)
        self.assertIsInstance(self.options["max-carry"], int)

    def test_poll(self) -> None:
        self.assertEqual(self.options["poll"], 60.0)
        self.assertIsInstance(self.options["poll"], float)


class OptionsAcceptedTests(TestCase):
    """Values that are accepted, and what they become."""

    def test_bare_port_number(self) -> None:
        self.assertEqual(parse("--port", "5000")["port"], "tcp:5000")

    def test_short_port_option(self) -> None:
        self.assertEqual(parse("-p", "8080")["port"], "tcp:8080")

    def test_endpoint_string(self) -> None:
        description = "tcp:5000:interface=127.0.0.1"
        self.assertEqual(parse("--port", description)["port"], description)

    def test_csv_in_existing_folder(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "power.csv")
        self.assertEqual(parse("--csv", path)["csv"], path)
        # Parsing checks; it does not create the file.
        self.assertFalse(os.path.exists(path))

    def test_csv_existing_file(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("")
        self.assertEqual(parse("--csv", path)["csv"], path)

    def test_channels_sorted_and_deduplicated(self) -> None:
        self.assertEqual(parse("--channels", "3,1,1")["channels"], (1, 3))

    def test_channels_with_spaces(self) -> None:
        self.assertEqual(parse("--channels", " 2, 0 ")["channels"], (0, 2))

    def test_channels_of_every_family(self) -> None:
        """Switch ids stay numbers; names, components and wildcards in rule 8's order."""
        self.assertEqual(
            parse("--channels", "pm1:*, em:0:b,2,switch:3,em:0,em1:1,em:00")["channels"],
            (2, 3, "em:0", "em:0:b", "em1:1", "pm1:*"))
        self.assertEqual(parse("--channels", "*,0")["channels"], (0, "*"))
        self.assertEqual(parse("--channels", "light:*,rgbw:2,cct:1,cover:0,rgb:*")["channels"],
                         ("cct:1", "cover:0", "light:*", "rgb:*", "rgbw:2"))

    def test_columns(self) -> None:
        self.assertEqual(parse()["columns"], ())
        self.assertEqual(parse("--columns", "ret_energy_total_Wh")["columns"],
                         ("ret_energy_total_Wh",))
        self.assertEqual(parse("--columns", "")["columns"], ())

    def test_threshold(self) -> None:
        self.assertEqual(parse("--threshold", "12.5")["threshold"], 12.5)

    def test_negative_threshold(self) -> None:
        """A negative threshold is allowed: every reading with a number is active."""
        self.assertEqual(parse("--threshold", "-1")["threshold"], -1.0)

    def test_tz(self) -> None:
        options = parse("--tz", "Europe/Berlin")
        self.assertEqual(options["tz"], "Europe/Berlin")
        self.assertEqual(options.config.zone, ZoneInfo("Europe/Berlin"))

    def test_max_carry_zero(self) -> None:
        self.assertEqual(parse("--max-carry", "0")["max-carry"], 0)

    def test_poll_zero_turns_polling_off(self) -> None:
        self.assertEqual(parse("--poll", "0")["poll"], 0.0)

    def test_poll_one_second(self) -> None:
        self.assertEqual(parse("--poll", "1")["poll"], 1.0)


class OptionsRejectedTests(TestCase):
    """
    Every unusable value is refused while parsing, with a L{usage.UsageError} whose
    message names the option.
    """

    def assertRejected(self, option: str, value: str) -> str:
        error = self.assertRaises(usage.UsageError, parse, f"--{option}", value)
        message = str(error)
        self.assertIn(f"--{option}", message)
        return message

    def test_port_not_a_number(self) -> None:
        self.assertRejected("port", "tcp:notaport")

    def test_port_unknown_endpoint_type(self) -> None:
        self.assertRejected("port", "bogus:1")

    def test_port_empty(self) -> None:
        self.assertRejected("port", "")

    def test_csv_missing_folder(self) -> None:
        missing = os.path.abspath(self.mktemp())
        message = self.assertRejected("csv", os.path.join(missing, "log.csv"))
        self.assertIn("does not exist", message)

    def test_csv_is_a_directory(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        message = self.assertRejected("csv", folder)
        self.assertIn("not a regular file", message)

    def test_csv_empty(self) -> None:
        self.assertRejected("csv", "")

    def test_channels_not_a_number(self) -> None:
        self.assertRejected("channels", "a")

    def test_channels_empty_item(self) -> None:
        self.assertRejected("channels", "1,,2")

    def test_channels_negative(self) -> None:
        self.assertRejected("channels", "-1")

    def test_channels_empty(self) -> None:
        self.assertRejected("channels", "")

    def test_channels_blank(self) -> None:
        self.assertRejected("channels", " ")

    def test_channels_unknown_family(self) -> None:
        for value in ("emdata:0", "foo:1", "0,sys:0", "Switch:1", "fan:*"):
            with self.subTest(value=value):
                self.assertIn("unknown family", self.assertRejected("channels", value))

    def test_channels_malformed(self) -> None:
        for value in ("em:0:d", "pm1:0:a", "pm1", "pm1:x", "em:-1", "em:", "em:0:", "*:0",
                      "pm1:**", "em:1:a:b", "1.5", "\u0661"):
            with self.subTest(value=value):
                self.assertRejected("channels", value)

    def test_columns_unknown(self) -> None:
        message = self.assertRejected("columns", "ret_energy_total_Wh,pf")
        self.assertIn("pf", message)
        self.assertIn("ret_energy_total_Wh", message)

    def test_threshold_not_a_number(self) -> None:
        self.assertRejected("threshold", "abc")

    def test_threshold_nan(self) -> None:
        self.assertRejected("threshold", "nan")

    def test_threshold_infinite(self) -> None:
        self.assertRejected("threshold", "inf")

    def test_tz_unknown(self) -> None:
        self.assertRejected("tz", "Mars/Base")

    def test_tz_empty(self) -> None:
        self.assertRejected("tz", "")

    def test_max_carry_negative(self) -> None:
        self.assertRejected("max-carry", "-1")

    def test_max_carry_fraction(self) -> None:
        self.assertRejected("max-carry", "1.5")

    def test_poll_negative(self) -> None:
        self.assertRejected("poll", "-5")

    def test_poll_below_one_second(self) -> None:
        self.assertRejected("poll", "0.5")

    def test_poll_not_a_number(self) -> None:
        self.assertRejected("poll", "x")

    def test_poll_infinite(self) -> None:
        self.assertRejected("poll", "inf")


@implementer(IReactorThreads)
class ThreadedMemoryReactor(MemoryReactorClock):
    """A memory reactor that also says it runs threads, as the real reactor does."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = ThreadPool()

    def getThreadPool(self) -> ThreadPool:
        return self.pool

    def callInThread(self, callable: Callable[..., Any], *args: object,
                     **kwargs: object) -> None:
        raise NotImplementedError

    def callFromThread(self, callable: Callable[..., Any], *args: object,
                       **kwargs: object) -> None:
        raise NotImplementedError

    def suggestThreadPoolSize(self, size: int) -> None:
        raise NotImplementedError


class MakeServiceTests(TestCase):
    """L{makeService} wires the configuration the options hold into one service."""

    def config(self, *args: str) -> Config:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        self.csv = os.path.join(folder, "log.csv")
        return parse("--csv", self.csv, *args).config

    def test_multi_service(self) -> None:
        """
        The service is a L{MultiService} holding the endpoint service (the one HTTP site)
        and the minute tick.
        """
        service = makeService(self.config(), MemoryReactorClock())
        self.assertIsInstance(service, MultiService)
        assert isinstance(service, MultiService)
        children = list(service)
        listeners = [s for s in children if isinstance(s, StreamServerEndpointService)]
        self.assertEqual(len(listeners), 1)
        self.assertIsInstance(listeners[0].factory, Site)
        self.assertEqual(len([s for s in children if isinstance(s, MinuteService)]), 1)

    def test_web_threads_of_their_own(self) -> None:
        """
        On a reactor with threads, web requests' work (password checks, day reads) has a
        pool of its own (L{WebThreads}), started before the listener and so stopped after
        it; the fsync keeps the reactor's.
        """
        service = makeService(self.config(), ThreadedMemoryReactor())
        assert isinstance(service, MultiService)
        children = list(service)
        (web,) = [s for s in children if isinstance(s, WebThreads)]
        self.assertIsNotNone(web.pool)
        (listener,) = [s for s in children if isinstance(s, StreamServerEndpointService)]
        self.assertLess(children.index(web), children.index(listener))

    def sink(self, service: object) -> CsvSink:
        assert isinstance(service, MultiService)
        [minutes] = [s for s in service if isinstance(s, MinuteService)]
        assert isinstance(minutes.sink, CsvSink)
        return minutes.sink

    def test_fsync_in_the_reactor_thread_pool(self) -> None:
        """On a reactor with threads, the sink's fsync goes to the reactor's pool."""
        reactor = ThreadedMemoryReactor()
        in_thread = self.sink(makeService(self.config(), reactor)).in_thread
        assert in_thread is not None
        jobs: list[tuple[object, ...]] = []
        self.patch(reactor.pool, "callInThreadWithCallback", lambda *job: jobs.append(job))
        in_thread(lambda: None)
        self.assertEqual(len(jobs), 1)

    def test_fsync_in_place_without_threads(self) -> None:
        self.assertIsNone(self.sink(makeService(self.config(), MemoryReactorClock())).in_thread)

    def test_listens_on_configured_endpoint(self) -> None:
        """
        Started, the service listens with the site on the endpoint from C{--port}, opens
        the CSV file (header only), and leaves nothing scheduled once stopped.
        """
        reactor = MemoryReactorClock()
        service = makeService(self.config("--port", "tcp:5001:interface=127.0.0.1"), reactor)
        service.startService()
        self.assertEqual(len(reactor.tcpServers), 1)
        port, factory, _backlog, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (5001, "127.0.0.1"))
        self.assertIsInstance(factory, Site)
        self.assertTrue(os.path.isfile(self.csv))
        self.successResultOf(service.stopService())
        self.assertEqual(reactor.getDelayedCalls(), [])
        with open(self.csv, encoding="utf-8") as f:
            self.assertEqual(
                f.read(),
                "timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,"
                "energy_total_Wh\n",
            )

    def test_autobahn_patches_applied_when_started(self) -> None:
        """Autobahn's process-wide patches: none when the service is built, all at start."""
        self.patch(autobahn_protocol, "pformat", inspect.unwrap(vars(autobahn_protocol)["pformat"]))
        self.patch(Timings, "__str__", inspect.unwrap(Timings.__str__))
        service = makeService(self.config("--port", "tcp:5001:interface=127.0.0.1"),
                              MemoryReactorClock())
        self.assertFalse(hasattr(vars(autobahn_protocol)["pformat"], "__wrapped__"))
        service.startService()
        self.addCleanup(service.stopService)
        self.assertTrue(hasattr(vars(autobahn_protocol)["pformat"], "__wrapped__"))
        self.assertTrue(hasattr(Timings.__str__, "__wrapped__"))


class PluginTests(TestCase):
    """The twistd plugin is found through Twisted's plugin system."""

    def test_discoverable(self) -> None:
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "shellylog"]
        self.assertEqual(len(makers), 1)
        maker = makers[0]
        self.assertIs(maker.options, tap.Options)
        self.assertTrue(maker.description)

    def test_makes_the_service_of_the_options(self) -> None:
        """
        twistd gives the plugin's makeService the parsed options; the service is built
        from their configuration.
        """
        [maker] = [m for m in getPlugins(IServiceMaker) if m.tapname == "shellylog"]
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        csv = os.path.join(folder, "log.csv")
        built: list[Config] = []
        def make(config: Config) -> MultiService:
            built.append(config)
            return MultiService()

        self.patch(tap, "makeService", make)
        options = parse("--csv", csv, "--port", "5001", "--max-rate", "7")
        self.assertIsInstance(maker.makeService(options), MultiService)
        self.assertEqual(built, [options.config])
        self.assertEqual((built[0].csv, built[0].port, built[0].limits.max_rate),
                         (csv, "tcp:5001", 7))


class HardeningOptionsTests(TestCase):
    """
    The hardening options: durability (C{--fsync}, C{--max-pending}), limits
    (C{--max-message}, C{--max-rate}, C{--max-connections}) and admission (C{--token},
    C{--token-file}, C{--allow}); and a C{--csv} file that is not ours.
    """

    def assertRejected(self, *args: str, option: str | None = None) -> str:
        error = self.assertRaises(usage.UsageError, parse, *args)
        message = str(error)
        self.assertIn(option or args[0], message)
        return message

    def token_file(self, text: str) -> str:
        path: str = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    # -- durability --------------------------------------------------------------------

    def test_fsync_default_on(self) -> None:
        self.assertIs(parse()["fsync"], True)

    def test_fsync_values(self) -> None:
        for text, value in [("on", True), ("off", False), ("yes", True), ("no", False),
                            ("ON", True), ("Off", False), ("true", True), ("0", False)]:
            with self.subTest(text=text):
                self.assertIs(parse("--fsync", text)["fsync"], value)

    def test_fsync_bad(self) -> None:
        self.assertRejected("--fsync", "sometimes")
        self.assertRejected("--fsync", "")

    def test_channel_metrics(self) -> None:
        """On by default; on/off as --fsync takes them; anything else a usage error."""
        self.assertIs(parse().config.channel_metrics, True)
        self.assertIs(parse("--channel-metrics", "off").config.channel_metrics, False)
        self.assertIs(parse("--channel-metrics", "on").config.channel_metrics, True)
        self.assertRejected("--channel-metrics", "some")

    def test_max_pending(self) -> None:
        self.assertEqual(parse()["max-pending"], 1_000_000)
        self.assertEqual(parse("--max-pending", "5")["max-pending"], 5)

    def test_max_pending_zero(self) -> None:
        self.assertRejected("--max-pending", "0")

    def test_max_pending_not_a_number(self) -> None:
        self.assertRejected("--max-pending", "x")

    # -- limits ------------------------------------------------------------------------

    def test_max_message_default(self) -> None:
        options = parse()
        self.assertEqual(options["max-message"], 262144)
        self.assertEqual(options.config.limits, Limits())

    def test_max_message_sizes(self) -> None:
        for text, value in [("256KiB", 262144), ("1MiB", 1048576), ("4096", 4096),
                            ("1024", 1024), ("64k", 65536), ("2M", 2097152),
                            ("512kib", 524288)]:
            with self.subTest(text=text):
                options = parse("--max-message", text)
                self.assertEqual(options["max-message"], value)
                self.assertEqual(options.config.limits.max_message, value)

    def test_max_message_bad_unit(self) -> None:
        self.assertRejected("--max-message", "12XB")

    def test_max_message_too_small(self) -> None:
        message = self.assertRejected("--max-message", "100")
        self.assertIn("1024", message)

    def test_max_message_not_a_size(self) -> None:
        for text in ["", "KiB", "-5", "1.5MiB", "1 2"]:
            with self.subTest(text=text):
                self.assertRejected("--max-message", text)

    def test_max_rate(self) -> None:
        self.assertEqual(parse().config.limits.max_rate, 600)
        self.assertEqual(parse("--max-rate", "5").config.limits.max_rate, 5)

    def test_max_rate_zero(self) -> None:
        self.assertRejected("--max-rate", "0")

    def test_max_rate_not_a_number(self) -> None:
        self.assertRejected("--max-rate", "lots")

    def test_max_bytes_rate_default(self) -> None:
        self.assertEqual(parse().config.limits.max_bytes_rate, 1024 * 1024)
        # Never below --max-message, or its largest message could not be used.
        self.assertEqual(parse("--max-message", "2MiB").config.limits.max_bytes_rate,
                         2 * 1024 * 1024)

    def test_max_bytes_rate(self) -> None:
        options = parse("--max-bytes-rate", "512KiB")
        self.assertEqual(options["max-bytes-rate"], 512 * 1024)
        self.assertEqual(options.config.limits, Limits(max_bytes_rate=512 * 1024))

    def test_max_bytes_rate_bad(self) -> None:
        self.assertRejected("--max-bytes-rate", "lots")
        self.assertRejected("--max-bytes-rate", "100")
        message = self.assertRejected("--max-bytes-rate", "128KiB")
        self.assertEqual(message, "--max-bytes-rate: at least --max-message (262144 bytes), "
                                  "got 131072")

    def test_max_bytes_rate_in_the_service(self) -> None:
        """The running service drops a device's frames past the option's bytes a minute."""
        stack = Stack(self, "--channels", "0", "--max-message", "4KiB",
                      "--max-bytes-rate", "10KiB")
        self.assertEqual(stack.get_status()["server"]["options"]["max-bytes-rate"], 10240)
        client, _connection = stack.connect()
        frames = [json.dumps(notify({"switch:0": switch(apower), "pad": "x" * 3900}))
                  for apower in (100, 200, 300, 400, 500, 600)]
        self.assertEqual({len(frame) for frame in frames}, {4027})
        stack.send(client, *frames[:3])  # 12,081 bytes: the third is over
        self.assertEqual(stack.registry.rejected, {"byte_rate_limited": 1})
        self.assertEqual(stack.status()["devices"][0]["channels"]["0"]["apower_W"], 200)
        stack.send(client, *frames[3:5])  # 20,135: at most twice the limit
        self.assertIsNone(client.closed)
        stack.send(client, frames[5])
        self.assertEqual(client.closed, (True, 1008, "too many bytes"))
        self.assertEqual(stack.status()["devices"][0]["channels"]["0"]["apower_W"], 200)
        self.assertEqual(stack.registry.rejected, {"byte_rate_limited": 4})

    def test_max_connections(self) -> None:
        self.assertEqual(parse().config.limits.max_connections, 10000)
        options = parse("--max-connections", "2")
        self.assertEqual(options["max-connections"], 2)
        self.assertEqual(options.config.limits, Limits(max_connections=2))

    def test_max_connections_bad(self) -> None:
        self.assertRejected("--max-connections", "0")
        self.assertRejected("--max-connections", "-3")
        self.assertRejected("--max-connections", "many")

    # -- device ids --------------------------------------------------------------------

    def test_id_pattern_default(self) -> None:
        options = parse()
        self.assertEqual(options["id-pattern"], r"[a-z][a-z0-9]{0,47}-[0-9a-f]{12}")
        self.assertEqual(options.config.id_pattern.pattern, options["id-pattern"])

    def test_id_pattern(self) -> None:
        self.assertEqual(parse("--id-pattern", "meter[0-9]+").config.id_pattern.pattern,
                         "meter[0-9]+")

    def test_id_pattern_not_a_regex(self) -> None:
        message = self.assertRejected("--id-pattern", "shelly[a-z")
        self.assertIn("shelly[a-z", message)
        self.assertRejected("--id-pattern", "(?P<x")
        self.assertRejected("--id-pattern", "*")

    def test_id_pattern_empty(self) -> None:
        self.assertRejected("--id-pattern", "")


    def test_max_warnings(self) -> None:
        self.assertEqual(parse().config.limits.max_warnings, 60)
        options = parse("--max-warnings", "0")
        self.assertEqual(options["max-warnings"], 0)
        self.assertEqual(options.config.limits, Limits(max_warnings=0))

    def test_max_warnings_bad(self) -> None:
        message = self.assertRejected("--max-warnings", "-1")
        self.assertEqual(message, "--max-warnings: must be 0 or more, got -1")
        self.assertRejected("--max-warnings", "few")

    # -- admission ---------------------------------------------------------------------

    def test_no_admission_options(self) -> None:
        self.assertEqual(parse().config.admission, Admission())

    def test_token(self) -> None:
        self.assertEqual(
            parse("--token", "s3cret").config.admission,
            Admission(tokens=(TokenRule("s3cret", ("*",)),)),
        )

    def test_token_and_token_file(self) -> None:
        path = self.token_file("t1 shellyplus1pm-*\n")
        message = self.assertRejected("--token", "s3cret", "--token-file", path)
        self.assertIn("--token-file", message)

    def test_token_with_space(self) -> None:
        message = self.assertRejected("--token", "s3 cret")
        self.assertNotIn("s3 cret", message)

    def test_token_empty(self) -> None:
        self.assertRejected("--token", "")

    def test_token_file(self) -> None:
        path = self.token_file("# shed\nt1 shellyplus1pm-*\nt2 shellypro4pm-aabbcc*\n")
        self.assertEqual(
            parse("--token-file", path).config.admission,
            Admission(tokens=(TokenRule("t1", ("shellyplus1pm-*",)),
                              TokenRule("t2", ("shellypro4pm-aabbcc*",)))),
        )

    def test_token_file_missing(self) -> None:
        missing = os.path.abspath(self.mktemp())
        message = self.assertRejected("--token-file", missing)
        self.assertIn(missing, message)

    def test_token_file_bad_line(self) -> None:
        path = self.token_file("t1 shellyplus1pm-*\n\nTOPSECRET\n")
        message = self.assertRejected("--token-file", path)
        self.assertIn("line 3", message)
        self.assertNotIn("TOPSECRET", message)

    def test_token_file_empty(self) -> None:
        self.assertRejected("--token-file", self.token_file("# nothing yet\n"))

    def test_allow_repeatable(self) -> None:
        options = parse("--allow", "shellypro4pm-*", "--allow", " shellyplus1pm-aa* ")
        self.assertEqual(options["allow"], ["shellypro4pm-*", "shellyplus1pm-aa*"])
        self.assertEqual(options.config.admission,
                         Admission(allow=("shellypro4pm-*", "shellyplus1pm-aa*")))

    def test_allow_with_token(self) -> None:
        admission = parse("--token", "s3cret", "--allow", "shellypro4pm-*").config.admission
        self.assertEqual(admission.tokens, (TokenRule("s3cret", ("*",)),))
        self.assertEqual(admission.allow, ("shellypro4pm-*",))

    def test_allow_empty(self) -> None:
        self.assertRejected("--allow", " ")

    def upgrade_status(self, stack: Stack, origin: bytes | None) -> bytes:
        """The status line a handshake to C{stack} with C{origin} (none: no header) gets."""
        data = raw_upgrade(b"/ws")
        if origin is not None:
            data = data[:-2] + b"Origin: " + origin + b"\r\n\r\n"
        raw, _connection = stack.harness.connect_raw(data)
        return raw.status_line

    def test_allow_origin_default_none(self) -> None:
        """Without the option, a handshake with any Origin is refused; devices send none."""
        self.assertEqual(parse()["allow-origin"], [])
        stack = Stack(self)
        for origin in [b"https://evil.example", b"null", b"http://127.0.0.1:5000"]:
            with self.subTest(origin=origin):
                self.assertEqual(self.upgrade_status(stack, origin), b"HTTP/1.1 403 Forbidden")
        self.assertEqual(stack.registry.rejected, {"bad_origin": 3})
        self.assertEqual(self.upgrade_status(stack, None), b"HTTP/1.1 101 Switching Protocols")
        self.assertEqual(rejected_in_metrics(stack), {"bad_origin": 3.0})

    def test_request_body_counted(self) -> None:
        """A request with a body, refused, is counted where /metrics reads it."""
        stack = Stack(self)
        raw, _connection = stack.harness.connect_raw(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
        self.assertTrue(raw.status_line.startswith(b"HTTP/1.1 405 "), raw.status_line)
        self.assertEqual(rejected_in_metrics(stack), {"request_body": 1.0})

    def test_allow_origin_repeatable(self) -> None:
        stack = Stack(self, "--allow-origin", "HTTP://192.0.2.5:8080", "--allow-origin", "null",
                      "--allow-origin", "https://shelly.example:443")
        self.assertEqual(stack.options["allow-origin"],
                         ["http://192.0.2.5:8080", "null", "https://shelly.example"])
        for origin in [b"http://192.0.2.5:8080", b"null", b"https://shelly.example"]:
            with self.subTest(origin=origin):
                self.assertEqual(self.upgrade_status(stack, origin),
                                 b"HTTP/1.1 101 Switching Protocols")
        for origin in [b"http://192.0.2.5:8081", b"https://192.0.2.5:8080",
                       b"http://shelly.example", b"https://evil.example"]:
            with self.subTest(origin=origin):
                self.assertEqual(self.upgrade_status(stack, origin), b"HTTP/1.1 403 Forbidden")
        self.assertEqual(stack.registry.rejected, {"bad_origin": 4})
        self.assertEqual(stack.get_status()["server"]["options"]["allow-origin"],
                         ["http://192.0.2.5:8080", "null", "https://shelly.example"])

    def test_allow_origin_bad(self) -> None:
        message = self.assertRejected("--allow-origin", "http://*.example")
        self.assertIn("not a pattern", message)
        for value in ["", "*", "example.com", "http://x/", "http://x/path", "ftp://x",
                      "http://", "http://x:abc", "http://x:99999", "http://u@x", "NULL x"]:
            with self.subTest(value=value):
                self.assertRejected("--allow-origin", value)

    # -- a CSV file that is not ours ---------------------------------------------------

    def test_csv_foreign_header(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"a,b\n1,2\n")
        before = os.stat(path)
        message = self.assertRejected("--csv", path)
        self.assertIn(path, message)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"a,b\n1,2\n")
        after = os.stat(path)
        self.assertEqual((after.st_size, after.st_mtime_ns), (before.st_size, before.st_mtime_ns))

    def test_csv_own_header(self) -> None:
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write("timestamp_iso,device_id,channel,apower_W,voltage_V,current_A,"
                    "energy_total_Wh\n")
        self.assertEqual(parse("--csv", path)["csv"], path)


class FakeResource:
    """
    The C{resource} module's open-file limits, as L{tap} uses them: a soft and a hard
    limit, and a C{setrlimit} that behaves as the kernel's, or fails with C{error}.
    """

    RLIMIT_NOFILE = resource.RLIMIT_NOFILE
    RLIM_INFINITY = resource.RLIM_INFINITY

    def __init__(self, soft: int, hard: int, error: OSError | None = None) -> None:
        self.limits = (soft, hard)
        self.error = error
        self.set_calls: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == self.RLIMIT_NOFILE
        self.set_calls.append(limits)
        if self.error is not None:
            raise self.error
        soft, hard = limits
        infinity = self.RLIM_INFINITY  # -1 on Linux: compared apart
        if hard != self.limits[1] or soft == infinity or (hard != infinity and soft > hard):
            raise ValueError("not allowed")
        self.limits = limits


class DescriptorLimitTests(TestCase):
    """
    When the service starts (not when it is built), the soft limit on open files is
    raised to make room for C{--max-connections} and a margin, as far as the hard limit
    allows; if that is not enough, a warning says so.
    """

    def start(self, limits: FakeResource, *args: str) -> list[LogEvent]:
        self.patch(tap, "resource", limits)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        events = capture_log(self)
        service = makeService(parse("--csv", os.path.join(folder, "log.csv"), *args).config,
                              MemoryReactorClock())
        self.assertEqual(limits.set_calls, [])
        service.startService()
        self.addCleanup(service.stopService)
        return [e for e in events if e.get("event") == "descriptor_limit_low"]

    def test_raised_to_the_hard_limit(self) -> None:
        """systemd's default, 1024:524288: raised to 524288, no warning."""
        limits = FakeResource(1024, 524288)
        self.assertEqual(self.start(limits), [])
        self.assertEqual(limits.set_calls, [(524288, 524288)])
        self.assertEqual(limits.limits, (524288, 524288))

    def test_hard_limit_too_low(self) -> None:
        """Raised as far as it goes, still too low for 10000 connections: warned."""
        limits = FakeResource(1024, 4096)
        [event] = self.start(limits)
        self.assertEqual(limits.limits, (4096, 4096))
        self.assertEqual(
            {k: event[k] for k in ("soft", "hard", "max_connections", "wanted", "room")},
            {"soft": 4096, "hard": 4096, "max_connections": 10000, "wanted": 10256,
             "room": 3840},
        )
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["log_namespace"], "shellylog.tap")
        self.assertEqual(
            formatEvent(event),
            "only 4096 open files are allowed (hard limit 4096), but --max-connections "
            "10000 needs 10256: connections beyond about 3840 will fail; raise the limit "
            "(LimitNOFILE= in a systemd unit, ulimit -n in a shell) or lower "
            "--max-connections",
        )

    def test_not_allowed_to_raise(self) -> None:
        """setrlimit refused (by a sandbox): the limit stays as it was, and is warned of."""
        limits = FakeResource(1024, 524288, error=PermissionError(1, "Operation not permitted"))
        [event] = self.start(limits)
        self.assertEqual(limits.set_calls, [(524288, 524288)])
        self.assertEqual((event["soft"], event["hard"]), (1024, 524288))

    def test_enough_already(self) -> None:
        limits = FakeResource(65536, 65536)
        self.assertEqual(self.start(limits), [])
        self.assertEqual(limits.set_calls, [])

    def test_follows_max_connections(self) -> None:
        """--max-connections 768 fits in 1024 with the margin of 256; 769 does not."""
        limits = FakeResource(1024, 1024)
        self.assertEqual(self.start(limits, "--max-connections", "768"), [])
        self.assertEqual(limits.set_calls, [])
        [event] = self.start(FakeResource(1024, 1024), "--max-connections", "769")
        self.assertEqual((event["max_connections"], event["wanted"]), (769, 1025))

    def test_unlimited_hard_limit(self) -> None:
        """An infinite hard limit is no soft limit the kernel takes: raised to what is needed."""
        infinity = resource.RLIM_INFINITY
        limits = FakeResource(1024, infinity)
        self.assertEqual(self.start(limits), [])
        self.assertEqual(limits.set_calls, [(10256, infinity)])

    def test_unlimited(self) -> None:
        infinity = resource.RLIM_INFINITY
        limits = FakeResource(infinity, infinity)
        self.assertEqual(self.start(limits), [])
        self.assertEqual(limits.set_calls, [])
