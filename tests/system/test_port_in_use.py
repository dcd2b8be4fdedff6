"""
L{makeService} on the real reactor and a real port (the rest of its tests, on a memory
reactor, are in tests/wire/test_tap.py).
"""

from __future__ import annotations

import os
import socket

from twisted.internet.error import CannotListenError
from twisted.trial.unittest import TestCase

from shellylog.tap import Options, makeService


class PortInUseTests(TestCase):
    """The port of C{--port} is taken."""

    def test_port_in_use_fails_start(self) -> None:
        """
        A port that cannot be listened on fails the (privileged) start, as twistd runs it,
        rather than leaving a server that accepts no device.
        """
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        number = taken.getsockname()[1]
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        options = Options()
        options.parseOptions(["--csv", os.path.join(folder, "log.csv"),
                              "--port", f"tcp:{number}:interface=127.0.0.1"])
        service = makeService(options.config)
        self.assertRaises(CannotListenError, service.privilegedStartService)
