"""
Autobahn's debug dumps are formatted only when read.
"""

from __future__ import annotations

import pprint

import autobahn.websocket.protocol as autobahn_protocol
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from shellylog.autobahn_debug import defer_debug_formatting
from tests.helpers import Harness


class DeferredFormattingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.calls: list[object] = []

        def counting(value: object) -> str:
            self.calls.append(value)
            return pprint.pformat(value)

        # Whatever an earlier test left there, start from a function that counts.
        self.patch(autobahn_protocol, "pformat", counting)
        defer_debug_formatting()

    def test_connection_formats_nothing(self) -> None:
        harness = Harness(self)
        for _ in range(3):
            client, _connection = harness.connect_ws("/ws")
            self.assertTrue(client.opened)
        self.assertEqual(self.calls, [])

    def test_same_text_when_read(self) -> None:
        value = [("autoPingInterval", 30, "ShellyServerFactory")] * 5
        deferred = autobahn_protocol.pformat(value)
        self.assertEqual(self.calls, [])
        self.assertEqual(str(deferred), pprint.pformat(value))
        self.assertEqual(f"\n{deferred}", "\n" + pprint.pformat(value))
        # As a log observer formats Autobahn's line.
        self.assertEqual(formatEvent({"log_format": "\n{attrs}", "attrs": deferred}),
                         "\n" + pprint.pformat(value))
        self.assertEqual(len(self.calls), 1)  # formatted once, however often read

    def test_once_per_process(self) -> None:
        wrapped = autobahn_protocol.pformat
        defer_debug_formatting()
        self.assertIs(autobahn_protocol.pformat, wrapped)
