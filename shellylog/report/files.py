"""
shellylog's CSV files on disk, as the report and the dashboard read them: their lines
(plain or gzip, whatever the name), and several files of one log in time order.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from itertools import islice

from shellylog.report.rows import NotShellylogError, read_rows

#: The first two bytes of a gzip file.
GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str) -> bool:
    """
    Whether C{path} is a gzip file, by its first bytes rather than its name.

    @raise OSError: if it cannot be opened.
    """
    with open(path, "rb") as raw:
        return raw.read(2) == GZIP_MAGIC


def file_lines(path: str) -> Iterator[str]:
    """
    The lines of C{path}, each with its line end (a torn last line has none), gunzipped
    if the file is gzip, whatever its name.

    @raise NotShellylogError: if it cannot be read, or is neither UTF-8 text nor gzip.
    """
    try:
        gzipped = is_gzip(path)
        # newline="": lines as written, so that a torn last line shows (no "\n").
        with (
            gzip.open(path, "rt", encoding="utf-8", newline="") if gzipped
            else open(path, encoding="utf-8", newline="")
        ) as f:
            yield from f
    except OSError as e:
        if isinstance(e, gzip.BadGzipFile):
            raise NotShellylogError(f"{path}: not a shellylog CSV file: {e}") from None
        raise NotShellylogError(f"{path}: cannot be read: {e.strerror or e}") from None
    except (UnicodeDecodeError, EOFError, zlib.error) as e:
        raise NotShellylogError(f"{path}: not a shellylog CSV file: {e}") from None


def first_minute(path: str) -> int | None:
    """The minute of the file's first row (None without rows), its header checked."""
    # The header and the first row are enough to place a file in time.
    for minute, *_ in read_rows(islice(file_lines(path), 2), path, lambda message: None):
        return minute
    return None


def in_time_order(paths: Sequence[str]) -> list[str]:
    """
    C{paths} by the minute of their first row (files without rows first): rotated files
    given in any order are read oldest first, so a run crossing a rotation stays whole.
    Every file's header is checked here, before a line of the report is written.
    """
    return [path for path, _ in firsts_in_time_order(paths)]


def firsts_in_time_order(paths: Sequence[str]) -> list[tuple[str, int | None]]:
    """
    L{in_time_order}, each path with the minute of its first row (C{None}: no rows).

    @raise NotShellylogError: for a file that cannot be read or is not shellylog's.
    """
    firsts = [(first_minute(path), index, path) for index, path in enumerate(paths)]
    return [(path, first) for first, _, path in
            sorted(firsts, key=lambda f: (-(2**62) if f[0] is None else f[0], f[1]))]
