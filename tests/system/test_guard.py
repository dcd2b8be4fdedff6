"""
The guard of the whole suite: the trial command that tox runs (the README's test command)
fails a test that logs an unhandled error, or that leaves a failing Deferred unseen. Trial
fails the first kind by itself; the second is only logged when the Deferred is collected,
so the command collects garbage after every test (C{--force-gc}) to charge it to the test
that left it.
"""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.support.tools import missing

TOX_INI = Path(__file__).resolve().parents[2] / "tox.ini"

# Trial's own verdicts on a module of tests that each break the rule once.
BAD_TESTS = textwrap.dedent('''
    from twisted.internet.defer import fail
    from twisted.logger import Logger
    from twisted.trial.unittest import SynchronousTestCase


    class Holder:
        """Something only the cycle collector frees."""


    class Bad(SynchronousTestCase):
        def test_failing_deferred_unseen(self):
            holder = Holder()
            holder.deferred = fail(ValueError("nobody looked at me"))
            holder.me = holder

        def test_logs_an_unhandled_error(self):
            try:
                1 / 0
            except ZeroDivisionError:
                Logger().failure("an error nobody handled")


    class Good(SynchronousTestCase):
        def test_fine(self):
            pass
''')


def trial_options() -> list[str]:
    """The options tox gives trial: the words between C{twisted.trial} and the tests."""
    if not TOX_INI.is_file():
        missing(f"no {TOX_INI}: not a source tree")
    config = configparser.ConfigParser(interpolation=None)
    config.read(TOX_INI, encoding="utf-8")
    words = shlex.split(config["testenv"]["commands"].replace("{posargs:tests}", ""))
    return words[words.index("twisted.trial") + 1:]


class GuardTests(SynchronousTestCase):
    def test_tox_collects_garbage_after_each_test(self) -> None:
        self.assertIn("--force-gc", trial_options())

    def test_bad_tests_fail(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        with open(os.path.join(folder, "bad_module.py"), "w", encoding="utf-8") as f:
            f.write(BAD_TESTS)
        done = subprocess.run(
            [sys.executable, "-m", "twisted.trial", *trial_options(), "bad_module"],
            cwd=folder, capture_output=True, text=True, timeout=120,
        )
        self.assertNotEqual(done.returncode, 0, done.stdout)
        summary = done.stdout.strip().splitlines()[-1]
        # (Trial counts the test whose garbage failed as a success too.)
        self.assertTrue(summary.startswith("FAILED (errors=2,"), done.stdout)
        for test in ["Bad.test_failing_deferred_unseen", "Bad.test_logs_an_unhandled_error"]:
            self.assertIn(f"bad_module.{test}\n", done.stdout)
        self.assertIn("nobody looked at me", done.stdout)
        self.assertIn("ZeroDivisionError", done.stdout)
