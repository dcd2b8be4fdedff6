"""
Packaging: the wheel carries the twistd plugin without claiming Twisted's packages, and the
version, kept once in pyproject.toml, is what the installed package reports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

import shellylog
from tests.support.processes import child_environment

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
# What a copy of the source tree leaves out: VCS data, environments, build and test output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".tox",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "_trial_temp*",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    "dropin.cache",
    "*.csv",
)


def project_version() -> str:
    """C{[project] version} of pyproject.toml, or skip when there is no source tree."""
    if not PYPROJECT.is_file():
        raise SkipTest(f"no {PYPROJECT}: the tests run from an installed copy")
    text = PYPROJECT.read_text(encoding="utf-8")
    project = text.partition("\n[project]\n")[2].partition("\n[")[0]
    if not re.search(r'^name = "shellylog"$', project, re.MULTILINE):
        raise SkipTest(f"{PYPROJECT} is not shellylog's")
    found = re.search(r'^version = "([^"]+)"$', project, re.MULTILINE)
    assert found is not None, f"no version in [project] of {PYPROJECT}"
    return found.group(1)


class VersionTests(SynchronousTestCase):
    """One version number, from pyproject.toml through the metadata to the package."""

    def test_package_version_is_the_metadata(self) -> None:
        self.assertEqual(shellylog.__version__, version("shellylog"))

    def test_metadata_is_pyproject(self) -> None:
        """The installed shellylog was built from this source tree's version."""
        self.assertEqual(version("shellylog"), project_version())

    def test_main_version(self) -> None:
        """C{python -m shellylog --version} prints C{shellylog X.Y.Z}."""
        # In a folder of its own: no shellylog in the working directory to import instead.
        folder = Path(self.mktemp())
        folder.mkdir(parents=True)
        result = subprocess.run(
            [sys.executable, "-m", "shellylog", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            env=child_environment(),
            cwd=folder,
        )
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (0, f"shellylog {shellylog.__version__}\n", ""),
        )
        self.assertRegex(result.stdout, r"^shellylog \d+\.\d+\.\d+")


class WheelTests(SynchronousTestCase):
    """The wheel built from the source tree."""

    def test_plugin_without_namespace_packages(self) -> None:
        """
        The wheel has the plugin module in C{twisted/plugins}, and no C{__init__.py} there
        or in C{twisted/}: installing it must not replace Twisted's own.
        """
        expected = project_version()
        # Built from a copy, so that no stale build/ of the checkout gets into the wheel
        # and the checkout gets no build output.
        work = Path(self.mktemp()).resolve()
        source = work / "source"
        shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
        out = work / "wheels"
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(source)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        wheels = sorted(out.glob("*.whl"))
        self.assertEqual(
            [w.name for w in wheels], [f"shellylog-{expected}-py3-none-any.whl"], result.stdout
        )
        with zipfile.ZipFile(wheels[0]) as wheel:
            names = set(wheel.namelist())
        self.assertIn("twisted/plugins/shellylog_plugin.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertNotIn("twisted/plugins/dropin.cache", names)
        self.assertIn("shellylog/__init__.py", names)
        self.assertIn("shellylog/__main__.py", names)
        # Every module of the source tree, subpackages too (setuptools takes only the
        # packages pyproject.toml lists).
        modules = {p.relative_to(source).as_posix() for p in (source / "shellylog").rglob("*.py")}
        self.assertIn("shellylog/simulate/__main__.py", modules)
        self.assertEqual(modules - names, set())
        # The dashboard's page and its assets (package data), the vendored licence too.
        static = {p.relative_to(source).as_posix()
                  for p in (source / "shellylog" / "dashboard" / "static").rglob("*")
                  if p.is_file()}
        self.assertIn("shellylog/dashboard/static/index.html", static)
        self.assertIn("shellylog/dashboard/static/vendor/uPlot.LICENSE", static)
        self.assertEqual(static - names, set())
        self.assertEqual(
            {n.split("/")[0] for n in names},
            {"shellylog", "twisted", f"shellylog-{expected}.dist-info"},
        )


class ImportTests(SynchronousTestCase):
    """What importing a module loads, in a fresh interpreter."""

    def test_no_reactor(self) -> None:
        """
        Importing the configuration installs no reactor, and loads neither Autobahn nor
        the WebSocket protocol: the command line and a report can use it alone.
        """
        code = ("import sys, shellylog.config; "
                "print([m for m in ('twisted.internet.reactor', 'autobahn', "
                "'shellylog.protocol') if m in sys.modules])")
        result = subprocess.run([sys.executable, "-c", code], env=child_environment(),
                                capture_output=True, text=True, timeout=60, check=True)
        self.assertEqual(result.stdout, "[]\n")
