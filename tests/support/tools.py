"""
The tools some tests need besides Python (nginx, node with its C{ws} package, libfaketime,
systemd, root for a tmpfs): found, or else the test skips on a developer's machine and
fails in CI (where C{CI} is set, as CI sets it): there C{.ci/run} installs every one of them,
so a missing tool is a broken CI script, never a reason to skip.
"""

from __future__ import annotations

import glob
import os
import shutil
from typing import NoReturn

from twisted.trial.unittest import SkipTest

# Debian puts daemons such as nginx in /usr/sbin, which a user's PATH may lack.
_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def in_ci() -> bool:
    """Whether this run is CI's (C{CI} set and not empty or C{false}/C{0})."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> NoReturn:
    """C{what} a test needs is not here: skip, or in CI fail."""
    if in_ci():
        raise AssertionError(f"{what}: CI must have it (.ci/run installs it); not skipping")
    raise SkipTest(what)


def tool(name: str, package: str | None = None) -> str:
    """The path of the program C{name} (Debian package C{package}), or L{missing}."""
    path = shutil.which(name, path=_SEARCH)
    if path is None:
        missing(f"{name} is not installed (Debian package {package or name})")
    return path


def node_ws() -> tuple[str, dict[str, str]]:
    """
    C{node}, and the environment in which it finds the C{ws} package: C{NODE_PATH}, as
    C{.ci/run} sets it after C{npm install ws} into a scratch folder.
    """
    node = tool("node", "nodejs")
    node_path = os.environ.get("NODE_PATH", "")
    if not any(os.path.isfile(os.path.join(folder, "ws", "package.json"))
               for folder in node_path.split(os.pathsep) if folder):
        missing("node's ws package is not on NODE_PATH (npm install --prefix DIR ws; "
                "NODE_PATH=DIR/node_modules)")
    return node, {**os.environ, "NODE_PATH": node_path}


def faketime_library() -> str:
    """libfaketime's multi-threaded library, for C{LD_PRELOAD}."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not found:
        missing("libfaketime is not installed (Debian package faketime)")
    return found[0]


def root() -> None:
    """This process is root (to mount a tmpfs), or L{missing}."""
    if os.geteuid() != 0:
        missing("needs root")
