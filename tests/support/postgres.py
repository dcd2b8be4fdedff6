"""
A private PostgreSQL server for a test: a cluster made by Debian's C{initdb} in a scratch
folder, served by C{pg_ctl} on a free loopback port, stopped and removed at cleanup.

PostgreSQL refuses to run as root (as CI runs): then its programs run as an unprivileged
user (C{postgres}, which Debian's package makes, else C{nobody}) who owns the scratch
folder; as anyone else, as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.support.tools import missing

#: The cluster's superuser: tests connect as it, without a password (trust on loopback).
USER = "shellylog"


def postgres_bin() -> str:
    """The folder of Debian's PostgreSQL programs (the newest version), or L{missing}."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda path: [int(p) if p.isdigit() else 0 for p in path.split("/")])
    if not found:
        missing("PostgreSQL is not installed (Debian package postgresql)")
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _runner() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs a program as the cluster's owner, and its ids."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin")
        if runuser is None:
            missing("runuser is not installed (Debian package util-linux)")
        return [runuser, "-u", name, "--"], entry.pw_uid, entry.pw_gid
    missing("no unprivileged user (postgres or nobody) to run PostgreSQL as")


class Cluster:
    """One private PostgreSQL server: L{start}, L{stop}, and its connection string."""

    def __init__(self, durable: bool = False, password: str | None = None) -> None:
        #: Whether the server fsyncs its commits as a production server does (a
        #: benchmark's); tests do without.
        self.durable = durable
        #: The superuser's password, which the server then asks for (scram-sha-256);
        #: without one, no password is asked.
        self.password = password
        self.bin = postgres_bin()
        self.prefix, uid, gid = _runner()
        self.folder = tempfile.mkdtemp(prefix="shellylog-pg-")
        if uid is not None and gid is not None:
            os.chown(self.folder, uid, gid)
        os.chmod(self.folder, 0o700)
        self.data = os.path.join(self.folder, "data")
        self.port = _free_port()
        auth = ["-A", "trust"]
        if password is not None:
            pwfile = os.path.join(self.folder, "pwfile")
            with open(pwfile, "w", encoding="utf-8") as f:
                f.write(password + "\n")
            if uid is not None and gid is not None:
                os.chown(pwfile, uid, gid)
            auth = ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
        self._run("initdb", "-D", self.data, "-U", USER, *auth, "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    @property
    def dsn(self) -> str:
        """A libpq connection string of the cluster's C{postgres} database."""
        return f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run([*self.prefix, os.path.join(self.bin, program), *args],
                                capture_output=True, text=True, cwd=self.folder, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{program} failed:\n{result.stdout}{result.stderr}"
                                 f"\n{self.log()}")

    def log(self) -> str:
        try:
            with open(os.path.join(self.folder, "server.log"), encoding="utf-8") as f:
                return f.read()
        except OSError:
            return ""

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.folder, "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server (fast: connections are closed); nothing if it is not running."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Run C{statement} in its own transaction; the rows it returns, if any."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True, password=self.password) as connection:
            cursor = connection.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []


def cluster(case: SynchronousTestCase, password: str | None = None) -> Cluster:
    """
    A private PostgreSQL server, started; stopped and removed at C{case}'s cleanup. With
    C{password}, it asks for that password.
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed (pip install 'shellylog[postgres]')")
    made = Cluster(password=password)
    case.addCleanup(made.remove)
    made.start()
    return made
