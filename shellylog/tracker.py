"""
The minute rules: which (device, channel, minute) gets a CSV row, and with which values.

This module is the contract of the minute log: "rule N" cites the numbered rules of
C{docs/minute-log.md}. It is pure logic: time comes in through an
injected clock (anything with C{seconds()}, such as the reactor or a L{task.Clock}), and
rows go out as values; nothing here touches the network or a file.
"""

from __future__ import annotations

from bisect import insort
from typing import Protocol

from attrs import define, field, frozen

from shellylog.channels import ChannelKey
from shellylog.status import ChannelValues

MINUTE = 60


class Clock(Protocol):
    """The one thing the tracker needs of C{IReactorTime}."""

    def seconds(self) -> float: ...


def minute_of(t: float) -> int:
    """The UTC epoch minute that contains the instant C{t} (Unix seconds)."""
    return int(t // MINUTE)


@define
class Row:
    """
    One CSV row: channel C{channel} of C{device_id} was active during C{minute}.

    Treated as immutable; not frozen only because a frozen class costs a microsecond more
    per instance, and a tick makes one for every active channel.
    """

    minute: int
    device_id: str
    #: The channel's key (L{shellylog.channels}): its order is the rows' (rule 8).
    channel: ChannelKey
    values: ChannelValues
    #: Whether the values were carried into the minute (rule 1b) rather than measured in it.
    carried: bool = field(default=False, eq=False)


@frozen
class ChannelView:
    """What the tracker knows of one channel, for people: see L{ChannelTracker.view}."""

    latest: ChannelValues | None
    active: bool
    last_written: int | None


@define
class _Channel:
    # The latest reading, apower or not, kept after a disconnect: for display only.
    latest: ChannelValues | None = None
    # The latest active reading received during the open minute (rule 2); for a
    # following channel, also last if its device had an update in the open minute.
    best: ChannelValues | None = None
    # The reading carried into the open minute by rule 1b, if any.
    carried: ChannelValues | None = None
    # The last reading with a number for apower on the current connection, and when
    # it was last received (for a following channel: its device's seen_at); None once
    # the connection closed (rule 5).
    last: ChannelValues | None = None
    last_at: float = 0.0
    # The newest minute written for this channel (rule 4).
    last_written: int | None = None
    # The first minute of the run that ends at last_written: the minutes with rows, one
    # after the other, up to it (set with last_written; a resumed one starts a run).
    run_start: int | None = None
    # Whether last is latest and is received again with every update of its device: then
    # last_at is the device's seen_at, and the channel's part in each update is applied
    # when it is needed (at a close) instead of with every update (see readings).
    follows: bool = False


@define
class _Device:
    channels: dict[int, _Channel] = field(factory=dict)
    # When the device's latest update was applied (its "at"), and in which open minute.
    seen_at: float = 0.0
    seen_minute: int | None = None
    # How many of its channels follow it.
    following: int = 0
    # Following channels with an active reading that left the live set (their carry ran
    # out while the device sent nothing): its next update makes them live again.
    dormant: set[int] = field(factory=set)


@define
class ChannelTracker:
    """
    Turns timed channel readings into minute rows.

    Readings and disconnects are stamped with C{clock.seconds()} on arrival. Before each
    is applied, every minute completed before it is closed (rule 3): its rows are fixed
    and wait in the tracker until L{close_completed} (the minute tick) or L{shutdown}
    takes them.

    @ivar threshold: watts; a reading is active when its C{|apower|} is strictly above
        (a meter exporting energy is running too: rule 8).
    @ivar max_carry: minutes a last active reading may be carried forward (rule 1b).
    """

    clock: Clock
    threshold: float = 5.0
    max_carry: int = 10
    #: The first minute not yet closed; None until the first event.
    open_minute: int | None = None
    stopped: bool = False
    _devices: dict[str, _Device] = field(factory=dict)
    # Channels that may give a row when the open minute closes: those with a best or
    # carried reading. Everything else is idle and costs nothing at the tick.
    _live: set[tuple[str, int]] = field(factory=set)
    # _live in row order, each with its device and channel state: kept sorted as channels
    # come and go, so that no tick sorts or looks up tens of thousands of channels.
    _live_sorted: list[tuple[str, int, _Device, _Channel]] = field(factory=list)
    _pending: list[Row] = field(factory=list)

    def _active(self, values: ChannelValues) -> bool:
        return values.apower is not None and abs(values.apower) > self.threshold

    def _advance(self, now: float) -> int:
        """
        Close every minute that completed before C{now}; return the open minute.

        A clock that stepped backwards closes nothing and leaves the open minute as it
        is, so a minute is never reopened (rule 4).
        """
        target = minute_of(now)
        if self.open_minute is None:
            self.open_minute = target
        while self.open_minute < target:
            if not self._live:
                # Nothing can give a row until the next reading: skip the idle gap.
                self.open_minute = target
                break
            self._close(self.open_minute)
            self.open_minute += 1
        return self.open_minute

    def _close(self, minute: int) -> None:
        # Runs for every live channel at every tick (40,000 in a large fleet): attribute
        # look-ups are hoisted into locals, and the activity test of _active is inlined.
        rows: list[Row] = []
        append = rows.append
        next_start = (minute + 1) * MINUTE
        carry_limit = self.max_carry * MINUTE
        threshold = self.threshold
        ended = []
        kept = []
        for entry in self._live_sorted:
            device_id, channel, device, state = entry
            best = state.best
            last = state.last
            if state.follows:
                # Received again with each of the device's updates (see readings).
                assert last is not None and last.apower is not None
                last_at = device.seen_at
                if (best is None and device.seen_minute == minute
                        and abs(last.apower) > threshold):
                    best = last
            else:
                last_at = state.last_at
            source = best if best is not None else state.carried
            if source is not None:
                written = state.last_written
                if written is None or minute > written:
                    append(Row(minute, device_id, channel, source, best is None))
                    if written != minute - 1:
                        state.run_start = minute
                    state.last_written = minute
                state.best = None
            if (
                last is not None
                and last.apower is not None
                and abs(last.apower) > threshold
            ):
                if next_start - last_at <= carry_limit:
                    state.carried = last
                    kept.append(entry)
                    continue
                if state.follows:
                    device.dormant.add(channel)
            state.carried = None
            ended.append((device_id, channel))
        if ended:
            self._live.difference_update(ended)
            self._live_sorted = kept
        self._pending.extend(rows)

    def _make_live(self, device_id: str, channel: int, device: _Device, state: _Channel) -> None:
        key = (device_id, channel)
        if key not in self._live:
            self._live.add(key)
            # Sorted by (device_id, channel), which are unique: the rest is never compared.
            insort(self._live_sorted, (device_id, channel, device, state))

    def _settle(self, state: _Channel, device: _Device, open_minute: int) -> None:
        """
        A following channel stops following its device: apply what the device's updates
        so far meant for it (its last_at, and its best in the open minute).
        """
        last = state.last
        assert state.follows and last is not None and last.apower is not None
        state.last_at = device.seen_at
        if (
            state.best is None
            and device.seen_minute == open_minute
            and abs(last.apower) > self.threshold
        ):
            state.best = last
        state.follows = False
        device.following -= 1

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Device()
        return device

    def _channels_of(self, device_id: str) -> dict[int, _Channel]:
        device = self._devices.get(device_id)
        return device.channels if device is not None else {}

    def _channel(self, device_id: str, channel: int) -> _Channel:
        channels = self._device(device_id).channels
        state = channels.get(channel)
        if state is None:
            state = channels[channel] = _Channel()
        return state

    def readings(self, device_id: str, values: dict[int, ChannelValues]) -> None:
        """
        Apply the readings of one device update: C{values} by channel number, one for
        every channel the device's status has now (a channel left out is no longer
        received). Every reading counts as received now; one that is the same object as
        in the device's previous update costs next to nothing.

        A reading whose C{apower} is missing neither starts nor ends activity.
        """
        if self.stopped:
            return
        now = self.clock.seconds()
        open_minute = self.open_minute
        if open_minute is None or not 0 <= now - open_minute * MINUTE < MINUTE:
            open_minute = self._advance(now)
            # A reading stamped in an already closed minute counts toward the open one.
            at = max(now, open_minute * MINUTE)
        else:
            at = now  # within the open minute, as nearly every reading is
        device = self._device(device_id)
        # Every frame of every device comes here. A channel whose reading is the same
        # object as in the device's previous update (the frame did not change it) follows
        # the device: what this update means for it is applied when needed, from the
        # device's seen_at and seen_minute (in _close and _settle). Others are applied now.
        channels = device.channels
        threshold = self.threshold
        present = 0
        for channel, reading in values.items():
            state = channels.get(channel)
            if state is None:
                state = channels[channel] = _Channel()
            elif state.follows:
                if reading is state.latest:
                    present += 1
                    continue
                self._settle(state, device, open_minute)
            state.latest = reading
            apower = reading.apower
            if apower is None:
                continue
            state.last = reading
            state.last_at = at
            state.follows = True
            device.following += 1
            present += 1
            if abs(apower) > threshold:
                state.best = reading
                self._make_live(device_id, channel, device, state)
        if device.following > present:
            # A following channel is not in this update (its component was deleted): it
            # was received up to the previous update.
            for channel, state in channels.items():
                if state.follows and channel not in values:
                    self._settle(state, device, open_minute)
                    device.dormant.discard(channel)
        device.seen_at = at
        device.seen_minute = open_minute
        if device.dormant:
            for channel in device.dormant:
                state = channels[channel]
                last = state.last
                if state.follows and last is not None and last.apower is not None \
                        and abs(last.apower) > threshold:
                    self._make_live(device_id, channel, device, state)
            device.dormant.clear()

    def disconnected(self, device_id: str) -> None:
        """
        The device's connection closed now: it was active up to now, and nothing of it
        is carried past now (rule 5).
        """
        if self.stopped:
            return
        open_minute = self._advance(self.clock.seconds())
        device = self._devices.get(device_id)
        if device is None:
            return
        for state in device.channels.values():
            if state.follows:
                self._settle(state, device, open_minute)
            state.last = None
        device.dormant.clear()

    def resume(self, device_id: str, channel: int, minute: int) -> None:
        """Record that C{minute} was already written for this channel (rule 4)."""
        state = self._channel(device_id, channel)
        if state.last_written is None or minute > state.last_written:
            # Only the last minute of the file is known: a run on from it counts from it.
            state.last_written = state.run_start = minute

    def forget(self, device_id: str) -> bool:
        """
        Drop all that is kept of C{device_id}, if that cannot change a row: its connection
        is closed (nothing received is still carried), none of its channels may give a
        row when the open minute closes, and none has a minute written that is not
        before the open minute (one resumed from the CSV file after the clock was set
        back): a row for a minute already written is then impossible after it returns,
        since rows are only made for the open minute and later (rule 4). Returns whether
        it was dropped.
        """
        device = self._devices.get(device_id)
        if device is None:
            return True
        open_minute = self.open_minute
        for channel, state in device.channels.items():
            if state.last is not None or (device_id, channel) in self._live:
                return False
            written = state.last_written
            if written is not None and (open_minute is None or written >= open_minute):
                return False
        del self._devices[device_id]
        return True

    def _take(self) -> list[Row]:
        rows, self._pending = self._pending, []
        return rows

    def close_completed(self) -> list[Row]:
        """
        The minute tick: close every completed minute and return all rows not yet taken,
        ordered by minute, device id, channel (rule 3).
        """
        if not self.stopped:
            self._advance(self.clock.seconds())
        return self._take()

    def shutdown(self) -> list[Row]:
        """
        A clean stop (rule 6): close the completed minutes, then the minute in progress as
        if it ended now; return every row not yet taken. Later events are ignored.
        """
        if self.stopped:
            return self._take()
        open_minute = self._advance(self.clock.seconds())
        self._close(open_minute)
        self.open_minute = open_minute + 1
        self.stopped = True
        return self._take()

    def view(self, device_id: str) -> dict[int, ChannelView]:
        """
        Each known channel of C{device_id}: its latest reading, whether it is active now
        (its last reading was, and its connection is open), and its last minute written.
        """
        return {
            channel: ChannelView(
                latest=state.latest,
                active=state.last is not None and self._active(state.last),
                last_written=state.last_written,
            )
            for channel, state in sorted(self._channels_of(device_id).items())
        }

    def runs(self, device_id: str) -> list[tuple[ChannelKey, ChannelValues, int | None]]:
        """
        Each channel of C{device_id} with a reading, in no particular order: its key, its
        latest reading and, while it runs, the first minute of its run; else C{None}.

        A channel runs while its last reading with a power is above the threshold on an
        open connection and the open minute gets a row for it (it is carried, rule 1b).
        Its run is the minutes with rows one after the other up to the open minute: it
        began with the run of the minutes written just before (L{_Channel.run_start}), or
        else with the open minute.

        Cheap, and safe to call from another thread than the reactor's (the metrics
        collector's): it copies the device's channels in one step and changes nothing.
        """
        device = self._devices.get(device_id)
        if device is None:
            return []
        open_minute = self.open_minute
        live = self._live
        threshold = self.threshold
        found: list[tuple[ChannelKey, ChannelValues, int | None]] = []
        for channel, state in list(device.channels.items()):
            latest = state.latest
            if latest is None:
                continue  # known only from the CSV file (resumed): nothing received yet
            last = state.last
            first = None
            if (open_minute is not None and last is not None and last.apower is not None
                    and abs(last.apower) > threshold and (device_id, channel) in live):
                written, start = state.last_written, state.run_start
                if written is not None and start is not None and written >= open_minute - 1:
                    first = start
                else:
                    first = open_minute
            found.append((channel, latest, first))
        return found

    @property
    def pending(self) -> int:
        """Rows closed but not yet taken by a tick."""
        return len(self._pending)
