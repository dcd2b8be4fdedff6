"""
Identities and connection slots on the whole service (L{tests.stack.Stack}):
C{--max-per-address}, and (below) the bound on device records, C{--max-devices}.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from shellylog.tap import Options
from tests.stack import Stack, notify, switch


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(["--csv", "x.csv", *args])
    return options


class MaxPerAddressTests(SynchronousTestCase):
    """C{--max-per-address}: the open connections of one IP address."""

    def test_limit_refuses_with_503(self) -> None:
        stack = Stack(self, "--max-per-address", "1")
        first, _ = stack.connect()
        self.assertTrue(first.opened)
        stack.send(first, notify({"switch:0": switch(100)}, src="shellyplus1pm-000000000001"))
        second, _ = stack.connect()
        self.assertFalse(second.opened)
        assert second.closed is not None
        self.assertIn("503", second.closed[2] or "")
        self.assertEqual(stack.factory.rejected, {"too_many_from_address": 1})
        self.assertEqual(stack.get_status()["server"]["options"]["max-per-address"], 1)
        # Another host still gets in.
        stack.harness.client_host = "198.51.100.9"
        third, _ = stack.connect()
        self.assertTrue(third.opened)

    def test_default_lets_200_in(self) -> None:
        stack = Stack(self)
        clients = [stack.connect()[0] for _ in range(201)]
        self.assertEqual([c.opened for c in clients], [True] * 200 + [False])
        self.assertEqual(stack.factory.rejected, {"too_many_from_address": 1})

    def test_bad_values(self) -> None:
        for value in ("0", "-1", "many"):
            with self.subTest(value=value):
                error = self.assertRaises(usage.UsageError, parse, "--max-per-address", value)
                self.assertIn("--max-per-address", str(error))
