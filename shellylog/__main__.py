"""
C{python -m shellylog --version}: the installed version. The server itself runs under
twistd: C{twistd -n shellylog [options]}.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from shellylog import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shellylog",
        description="Minute-by-minute CSV log of the power drawn by Shelly switch channels.",
        epilog="Run the server with: twistd -n shellylog [options] "
        "(twistd shellylog --help lists the options).",
    )
    parser.add_argument("--version", action="version", version=f"shellylog {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
