"""
JSON-RPC frames as devices send them: notifications, switch components, and the statuses of
the real devices' fixture files.
"""

from __future__ import annotations

from typing import Any

from tests.fixtures import load_fixture

#: The device of most tests (a Pro 4PM), unless a test names another.
DEVICE = "shellypro4pm-aabbccddeeff"


def notify(params: Any, *, src: str = DEVICE, method: str = "NotifyStatus") -> dict[str, Any]:
    """A notification (C{NotifyStatus} unless C{method} says otherwise) as a device sends it."""
    return {"src": src, "dst": "ws", "method": method, "params": params}


def switch(apower: float, voltage: float | None = None, current: float | None = None,
           energy: float | None = None) -> dict[str, Any]:
    """A C{switch:N} component with the values given."""
    component: dict[str, Any] = {"apower": apower}
    if voltage is not None:
        component["voltage"] = voltage
    if current is not None:
        component["current"] = current
    if energy is not None:
        component["aenergy"] = {"total": energy}
    return component


def fixture_status(name: str) -> dict[str, Any]:
    """The C{status} of a fixture file: a full status as a device sends it."""
    status: dict[str, Any] = load_fixture(name)["status"]
    return status


def fixture_device_id(name: str) -> str:
    """The device id of a fixture file's device."""
    device_id: str = load_fixture(name)["shelly"]["id"]
    return device_id
