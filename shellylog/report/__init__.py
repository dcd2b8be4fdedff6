"""
C{python -m shellylog.report CSV...} (C{shellylog-report}): what the channels did, read
from shellylog's CSV files: their runs, or their daily totals.

Its modules, each pure (no I/O, no reactor) but the files and the command line:

 - L{shellylog.report.rows}: the files' lines as readings: the header, each row checked,
   the filters (device, channel, time).
 - L{shellylog.report.runs}: readings into runs, and into daily totals.
 - L{shellylog.report.output}: runs and totals as text, CSV or JSON.
 - L{shellylog.report.files}: the files' lines (plain or gzip), files in time order.
 - L{shellylog.report.__main__}: the command line; it opens the files and writes the
   report.
"""
