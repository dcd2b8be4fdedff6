"""
The device model of the simulator: pure, no reactor and no I/O. What every simulated
device is, whatever its family.

A L{SimulatedDevice} has an identity (from its L{Profile} and its number), a boot time
and a clock sync; time comes in through an injected clock (anything with C{seconds()}) and
randomness through an injected L{random.Random}. It builds the messages a device sends,
following C{protocol.md}: C{NotifyFullStatus} on connect (C{ts} is the uptime until the
device has synced its clock), and the answers to requests (C{Shelly.GetStatus}, or an error
object for a method it does not have).

What a device's components are, how they evolve and which of their changes it reports
belong to its family: a subclass of L{SimulatedDevice} with its own subclass of L{Profile},
in a module of its own (L{shellylog.simulate.switch}).
"""

from __future__ import annotations

import json
import random
import time
from abc import ABC, abstractmethod
from typing import Any, Generic, Protocol, TypeVar

from attrs import define, frozen

#: A JSON-RPC message the device sends (a notification or the answer to a request), as
#: the JSON-ready object that L{encode} turns into the text of one WebSocket message.
#: Not L{shellylog.rpc.Frame}, which is what the server decodes such a text into.
DeviceMessage = dict[str, Any]

MINUTE = 60

#: The error a Gen2 device answers for a method it does not have.
NOT_FOUND = -114


class Clock(Protocol):
    """The one thing the device model needs of C{IReactorTime}."""

    def seconds(self) -> float: ...


def as_sent(value: float, digits: int) -> float:
    """C{value} rounded as the device sends it, and never C{-0.0}."""
    return round(value, digits) + 0.0


@frozen
class Profile(ABC):
    """
    A kind of device: the name C{--profile} gives it, and its identity. A family's
    subclass adds what its components drive, and makes its devices.

    @ivar pro: a Pro device (Ethernet, a C{ui} component, more memory).
    """

    name: str
    model: str
    app: str
    sku: str
    pro: bool

    @abstractmethod
    def create_device(
        self,
        index: int,
        clock: Clock,
        seed: int | str = 0,
        uptime: float = 5.0,
        time_sync_after: float = 10.0,
    ) -> SimulatedDevice[Any]:
        """
        Device number C{index} of this profile, booted C{uptime} seconds ago; its
        randomness comes from C{seed} and C{index}, so a run can be repeated.
        """


def device_mac(index: int) -> str:
    """The MAC of simulated device number C{index}: locally administered, unique per index."""
    return f"02{index:010X}"


def device_id(profile: Profile, index: int) -> str:
    """The id (C{<model>-<mac>}) of simulated device number C{index}."""
    return f"{profile.model}-{device_mac(index).lower()}"


def _component_order(key: str) -> tuple[str, int]:
    # As the device lists them: by type, then by number ("switch:10" after "switch:9").
    kind, _, number = key.partition(":")
    return kind, int(number) if number else -1


P = TypeVar("P", bound=Profile)


@define
class SimulatedDevice(ABC, Generic[P]):
    """
    One simulated Shelly Gen2 device.

    Everything it does happens when it is asked: L{connected} (the socket opened),
    L{sample} (a measurement is due), L{answer} (a request came in). Each first brings
    the device's state up to C{clock.seconds()}, then returns the messages a real device
    would send.

    A family implements L{components} and L{sample}, and if it needs to, L{advance} and
    L{reported}.

    @ivar booted_at: when the device booted, on C{clock}; C{ts} before the clock sync is
        the time since then.
    @ivar time_sync_after: seconds after boot at which the device has synced its clock
        (SNTP); from then on C{ts} and C{sys.unixtime} are Unix time.
    """

    profile: P
    index: int
    clock: Clock
    rng: random.Random
    booted_at: float
    time_sync_after: float = 10.0

    # -- the family's part -----------------------------------------------------------

    @abstractmethod
    def components(self) -> dict[str, Any]:
        """The family's components of the full status (C{switch:0}, ...), by key."""

    @abstractmethod
    def sample(self) -> list[DeviceMessage]:
        """A measurement is due: evolve, and return the messages it gives."""

    def advance(self) -> None:
        """Bring the state (energy counters, say) up to C{clock.seconds()}."""

    def reported(self) -> None:
        """The full status just went out: what is reported next counts from it."""

    # -- identity and time -----------------------------------------------------------

    @property
    def device_id(self) -> str:
        return device_id(self.profile, self.index)

    @property
    def mac(self) -> str:
        return device_mac(self.index)

    def uptime(self) -> float:
        return self.clock.seconds() - self.booted_at

    def synced(self) -> bool:
        """Has the device synced its clock?"""
        return self.uptime() >= self.time_sync_after

    def ts(self) -> float:
        """C{params.ts}: Unix time once synced, the uptime before."""
        now = self.clock.seconds()
        return as_sent(now if self.synced() else now - self.booted_at, 2)

    def device_time(self, unix: float) -> int:
        """The Unix time C{unix} on the device's time: the uptime then until synced."""
        return int(unix) if self.synced() else max(0, int(unix - self.booted_at))

    # -- messages --------------------------------------------------------------------

    def notification(self, method: str, components: dict[str, Any]) -> DeviceMessage:
        """A notification as the device sends it on the outbound socket."""
        params: dict[str, Any] = {"ts": self.ts()}
        params.update(components)
        return {"src": self.device_id, "dst": "ws", "method": method, "params": params}

    def full_status(self) -> dict[str, Any]:
        """The full status: C{NotifyFullStatus} params and C{Shelly.GetStatus} result."""
        self.advance()
        now = self.clock.seconds()
        synced = self.synced()
        pro = self.profile.pro
        status: dict[str, Any] = {"ble": {}, "cloud": {"connected": False}}
        if pro:
            status["eth"] = {"ip": None}
        status["mqtt"] = {"connected": False}
        status["sys"] = {
            "mac": self.mac,
            "restart_required": False,
            "time": time.strftime("%H:%M", time.gmtime(now)) if synced else None,
            "unixtime": int(now) if synced else None,
            "uptime": int(self.uptime()),
            "ram_size": 256388 if pro else 260728,
            "ram_free": 80320 if pro else 122072,
            "fs_size": 524288 if pro else 458752,
            "fs_free": 204800 if pro else 135168,
            "cfg_rev": 7,
            "kvs_rev": 0,
            "schedule_rev": 0,
            "webhook_rev": 0,
            "available_updates": {},
        }
        if pro:
            status["ui"] = {}
        status["wifi"] = {
            "sta_ip": f"10.{(self.index >> 16) & 255}.{(self.index >> 8) & 255}."
            f"{self.index & 255}",
            "status": "got ip",
            "ssid": "simulated",
            "rssi": -60 - self.index % 20,
        }
        status["ws"] = {"connected": True}
        status.update(self.components())
        return {key: status[key] for key in sorted(status, key=_component_order)}

    def connected(self) -> list[DeviceMessage]:
        """The socket opened: send the full status; deltas count from it from now on."""
        status = self.full_status()
        self.reported()
        return [self.notification("NotifyFullStatus", status)]

    def device_info(self) -> dict[str, Any]:
        """The C{Shelly.GetDeviceInfo} result."""
        return {
            "name": None,
            "id": self.device_id,
            "mac": self.mac,
            "slot": 0,
            "model": self.profile.sku,
            "gen": 2,
            "fw_id": "20231219-133934/1.1.0-g34b5d4f",
            "ver": "1.1.0",
            "app": self.profile.app,
            "auth_en": False,
            "auth_domain": None,
        }

    def answer(self, text: str | bytes) -> DeviceMessage | None:
        """
        The answer to a message from the server, or C{None} when it is no request (a
        notification or a response has no answer; neither has what is not JSON).
        Method names are case-insensitive, as on the device.
        """
        try:
            request = json.loads(text)
        except ValueError:
            return None
        if not isinstance(request, dict) or "id" not in request:
            return None
        method = request.get("method")
        if not isinstance(method, str):
            return None
        message: DeviceMessage = {"id": request["id"], "src": self.device_id}
        if isinstance(request.get("src"), str):
            message["dst"] = request["src"]
        name = method.lower()
        if name == "shelly.getstatus":
            message["result"] = self.full_status()
        elif name == "shelly.getdeviceinfo":
            message["result"] = self.device_info()
        else:
            message["error"] = {"code": NOT_FOUND, "message": f"Method {method} failed: not found"}
        return message


def encode(message: DeviceMessage) -> bytes:
    """C{message} as the text of one WebSocket message."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8")
