"""
The database's options (C{--db}, C{--db-password-file}, C{--db-table}, C{--csv none}):
checked at start, with clear usage errors; the password never shown.
"""

from __future__ import annotations

import json
import os
import sys
from types import ModuleType

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from shellylog.statuspage import public_options
from shellylog.tap import Options

DSN = "postgresql://logger:s3cret@db.example:5433/power"


def _restore(name: str, module: ModuleType | None) -> None:
    if module is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = module


class DatabaseOptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.csv = os.path.join(self.folder, "power.csv")

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--csv", self.csv, *args])
        return options

    def error(self, *args: str) -> str:
        options = Options()
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(list(args))
        return str(caught.exception)

    def test_db(self) -> None:
        config = self.parse("--db", DSN).config
        self.assertEqual(config.db, DSN)
        self.assertEqual(config.db_table, "shellylog_minutes")
        self.assertEqual(config.csv, self.csv)

    def test_db_without_psycopg(self) -> None:
        """Without the extra, the error says how to install it."""
        for name in ("psycopg", "psycopg.conninfo"):
            # None in sys.modules: the import raises ImportError, as when not installed.
            self.addCleanup(_restore, name, sys.modules.get(name))
            sys.modules[name] = None  # type: ignore[assignment]
        message = self.error("--db", DSN)
        self.assertIn("pip install 'shellylog[postgres]'", message)

    def test_db_does_not_parse(self) -> None:
        message = self.error("--db", "host=db.example password")
        self.assertIn("--db: not a connection string or URI", message)

    def test_csv_none(self) -> None:
        """C{--csv none}: the database only."""
        config = self.parse("--db", DSN, "--csv", "none").config
        self.assertIsNone(config.csv)

    def test_csv_none_needs_db(self) -> None:
        self.assertIn("only with --db", self.error("--csv", "none"))

    def test_password_file(self) -> None:
        """Its first line is the password; /status shows the file, never the password."""
        path = os.path.join(self.folder, "db-password")
        with open(path, "w", encoding="utf-8") as f:
            f.write("pa55word\nignored\n")
        config = self.parse("--db", DSN, "--db-password-file", path).config
        self.assertEqual(config.db_password, "pa55word")
        shown = public_options(config)
        self.assertEqual(shown["db-password-file"], path)
        text = json.dumps(shown)
        self.assertNotIn("pa55word", text)
        self.assertNotIn("s3cret", text)
        self.assertEqual(shown["db"], "host=db.example port=5433 dbname=power user=logger")
        self.assertNotIn("pa55word", repr(config))

    def test_password_file_unreadable(self) -> None:
        message = self.error("--db", DSN, "--db-password-file",
                             os.path.join(self.folder, "missing"))
        self.assertIn("--db-password-file: cannot read", message)

    def test_password_file_empty(self) -> None:
        path = os.path.join(self.folder, "empty")
        open(path, "w").close()
        self.assertIn("no password", self.error("--db", DSN, "--db-password-file", path))

    def test_password_file_needs_db(self) -> None:
        path = os.path.join(self.folder, "pw")
        with open(path, "w") as f:
            f.write("x\n")
        self.assertIn("only with --db", self.error("--db-password-file", path))

    def test_table(self) -> None:
        self.assertEqual(self.parse("--db", DSN, "--db-table", "power.minutes").config.db_table,
                         "power.minutes")
        self.assertIn("--db-table: not a table name",
                      self.error("--db", DSN, "--db-table", "Robert'); DROP TABLE x"))
