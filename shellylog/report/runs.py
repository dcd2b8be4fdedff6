"""
Readings into runs, and into daily totals: the definitions of the README's "What did my
pump do?", exactly.

Pure, and streaming: readings come in (in the files' order: by minute, devices
interleaved), and a run or a day's total goes out as soon as it is complete. Only the
open run (or day) of each (device, channel) is held, so memory does not grow with the
files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime, tzinfo
from decimal import Decimal

from attrs import define, frozen

from shellylog.report.rows import Reading, channel_order, local_midnight
from shellylog.tracker import MINUTE

#: (device id, channel cell).
Key = tuple[str, str]


@frozen
class Run:
    """
    A maximal stretch of minutes with rows of one (device, channel), gaps of at most
    C{--gap} minutes joined.

    @ivar start: UTC epoch minute of its first row.
    @ivar end: UTC epoch minute after its last row: its last minute's end.
    @ivar minutes: its rows (minutes on); fewer than C{end - start} when gaps were joined.
    @ivar peak_W: the row power of the largest magnitude (its sign kept: an export is
        negative); C{None} if no row has a power.
    @ivar mean_W: the mean of its rows' power.
    @ivar energy_Wh: each row's power held for its minute: C{sum(apower_W) / 60}.
    @ivar counter_Wh: the rise of C{energy_total_Wh} over its rows: the last counter minus
        the first, a fall (a counter reset) ending one rise and starting the next;
        C{None} if no row has a counter.
    """

    device: str
    channel: str
    start: int
    end: int
    minutes: int
    peak_W: float | None
    mean_W: float | None
    energy_Wh: float | None
    counter_Wh: float | None


def _rise(start: float, end: float) -> float:
    """
    C{end - start} as the decimal cells read: C{100.4 - 100.0} is C{0.4}, where floats
    give C{0.4000000000000057}. Each cell is the C{repr} of a float (rule 7), which
    C{repr} gives back.
    """
    return float(Decimal(repr(end)) - Decimal(repr(start)))


@define
class _OpenRun:
    """A run still growing, with the sums it needs to be closed."""

    device: str
    channel: str
    start: int
    last: int
    minutes: int = 0
    powered: int = 0
    power_sum: float = 0.0
    peak: float | None = None
    # The counter's rise: finished rises, and the start and end of the one under way.
    risen: float = 0.0
    counter_from: float | None = None
    counter_to: float | None = None

    def add(self, minute: int, apower: float | None, energy: float | None) -> None:
        self.last = minute
        self.minutes += 1
        if apower is not None:
            self.powered += 1
            self.power_sum += apower
            peak = self.peak
            if peak is None or abs(apower) > abs(peak):
                self.peak = apower
        if energy is not None:
            before = self.counter_to
            if before is None:
                self.counter_from = energy
            elif energy < before:
                # The counter was reset: what it rose to before counts, then it rises anew.
                assert self.counter_from is not None
                self.risen += _rise(self.counter_from, before)
                self.counter_from = energy
            self.counter_to = energy

    def close(self) -> Run:
        counter = None
        if self.counter_to is not None:
            assert self.counter_from is not None
            counter = self.risen + _rise(self.counter_from, self.counter_to)
        return Run(
            device=self.device,
            channel=self.channel,
            start=self.start,
            end=self.last + 1,
            minutes=self.minutes,
            peak_W=self.peak,
            mean_W=self.power_sum / self.powered if self.powered else None,
            energy_Wh=self.power_sum / 60 if self.powered else None,
            counter_Wh=counter,
        )


def _order(run: Run) -> tuple[int, str, int]:
    return run.end, run.device, channel_order(run.channel)


@define
class RunBuilder:
    """
    Builds the runs of readings: L{runs}. C{gap}: runs apart by at most this many minutes
    without a row are one run. C{skipped} counts rows left out because they were not
    later than the row before them of their (device, channel): repeated or out of order
    (files given twice, or in an order the files' own times contradict).
    """

    gap: int = 0
    skipped: int = 0

    def runs(self, readings: Iterable[Reading]) -> Iterator[Run]:
        """
        The runs of C{readings}, each as soon as no later row can extend it: by the
        minute they end, then device and channel (rule 8's order).
        """
        reach = self.gap + 1  # a row at most this many minutes after the last joins
        open_runs: dict[Key, _OpenRun] = {}
        # The last minute of each (device, channel) whose run was closed.
        ended: dict[Key, int] = {}
        now = -(2**62)
        for minute, device, channel, apower, energy in readings:
            if minute > now:
                now = minute
                # Runs that no row from now on can reach are complete.
                done = [k for k, r in open_runs.items() if r.last + reach < minute]
                if done:
                    closed = [open_runs.pop(k).close() for k in done]
                    for complete in closed:
                        ended[(complete.device, complete.channel)] = complete.end - 1
                    yield from sorted(closed, key=_order)
            key = (device, channel)
            run = open_runs.get(key)
            if run is not None:
                if minute <= run.last:
                    self.skipped += 1
                    continue
                if minute <= run.last + reach:
                    run.add(minute, apower, energy)
                    continue
                # Only when the stream went back in time (the clock was set back).
                ended[key] = run.last
                yield run.close()
            elif minute <= ended.get(key, -(2**62)):
                self.skipped += 1
                continue
            run = open_runs[key] = _OpenRun(device, channel, minute, minute)
            run.add(minute, apower, energy)
        yield from sorted((r.close() for r in open_runs.values()), key=_order)


@frozen
class DayTotal:
    """
    What one (device, channel) did on one local day (C{--tz}), its runs split at local
    midnight: a run that crosses midnight counts on both days, each with its own
    minutes.

    @ivar runs: the runs (or pieces of runs) with rows on the day.
    @ivar minutes: its rows on the day (minutes on).
    @ivar energy_Wh: C{sum(apower_W) / 60} over those rows.
    @ivar peak_W: the row power of the largest magnitude, its sign kept.
    """

    device: str
    channel: str
    day: date
    runs: int
    minutes: int
    energy_Wh: float | None
    peak_W: float | None


@define
class _OpenDay:
    device: str
    channel: str
    day: date
    last: int
    runs: int = 1
    minutes: int = 0
    powered: int = 0
    power_sum: float = 0.0
    peak: float | None = None

    def close(self) -> DayTotal:
        return DayTotal(
            device=self.device,
            channel=self.channel,
            day=self.day,
            runs=self.runs,
            minutes=self.minutes,
            energy_Wh=self.power_sum / 60 if self.powered else None,
            peak_W=self.peak,
        )


def _day_order(total: DayTotal) -> tuple[date, str, int]:
    return total.day, total.device, channel_order(total.channel)


@define
class DayCalendar:
    """The local day of a UTC epoch minute in C{zone}, remembering the last day's bounds."""

    zone: tzinfo
    _day: date | None = None
    _lo: int = 0
    _hi: int = 0

    def day_of(self, minute: int) -> date:
        """The local date in which C{minute} starts."""
        if self._lo <= minute < self._hi and self._day is not None:
            return self._day
        day = datetime.fromtimestamp(minute * MINUTE, self.zone).date()
        lo = local_midnight(day, self.zone)
        hi = local_midnight(date.fromordinal(day.toordinal() + 1), self.zone)
        # A zone whose midnight does not exist on some day (a DST change at 00:00):
        # remember this minute alone rather than wrong bounds.
        if not lo <= minute < hi or (
            datetime.fromtimestamp((hi - 1) * MINUTE, self.zone).date() != day
        ):
            lo, hi = minute, minute + 1
        self._day, self._lo, self._hi = day, lo, hi
        return day


@define
class DailyBuilder:
    """
    Builds daily totals: L{totals}. C{gap} joins runs as in L{RunBuilder}; C{skipped}
    counts the same rows as there.
    """

    zone: tzinfo
    gap: int = 0
    skipped: int = 0

    def totals(self, readings: Iterable[Reading]) -> Iterator[DayTotal]:
        """
        The daily totals of C{readings}, each day's once the readings have passed it: by
        day, then device and channel (rule 8's order).
        """
        reach = self.gap + 1
        calendar = DayCalendar(self.zone)
        days: dict[Key, _OpenDay] = {}
        last: dict[Key, int] = {}
        today: date | None = None
        for minute, device, channel, apower, _energy in readings:
            day = calendar.day_of(minute)
            if today is None or day > today:
                today = day
                done = [k for k, d in days.items() if d.day < day]
                if done:
                    yield from sorted((days.pop(k).close() for k in done), key=_day_order)
            key = (device, channel)
            before = last.get(key)
            if before is not None and minute <= before:
                self.skipped += 1
                continue
            last[key] = minute
            total = days.get(key)
            if total is None or total.day != day:
                if total is not None:  # the stream went back in time
                    yield total.close()
                # The first row of a day: a run starts, or one goes on past midnight.
                total = days[key] = _OpenDay(device, channel, day, minute)
            elif minute > total.last + reach:
                total.runs += 1
            total.last = minute
            total.minutes += 1
            if apower is not None:
                total.powered += 1
                total.power_sum += apower
                peak = total.peak
                if peak is None or abs(apower) > abs(peak):
                    total.peak = apower
        yield from sorted((d.close() for d in days.values()), key=_day_order)
