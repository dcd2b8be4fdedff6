"""
Running shellylog in child processes: the environment that lets a child import the same
shellylog as the tests, and the command line that starts twistd with it.
"""

from __future__ import annotations

import os
import sys
import sysconfig

import shellylog

# twistd's own entry point, run by this interpreter: no script on PATH needed.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def child_environment() -> dict[str, str]:
    """
    This process's environment, for a child that imports shellylog from where this process
    did: the installed package, or else a source tree, put first on its path.
    """
    env = dict(os.environ)
    source = os.path.realpath(os.path.dirname(os.path.dirname(shellylog.__file__)))
    installed = {os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib")}
    if source not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in [source, env.get("PYTHONPATH", "")] if p)
    return env
