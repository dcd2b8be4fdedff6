"""
The device a third-party client plays (the scripts in C{tests/system/clients}, the page in
C{tests/system/browser}): a fixture's full status, one update, and the CSV row they make.
"""

from __future__ import annotations

from typing import Any

from tests.fixtures import load_fixture

FIXTURE = "plus1pm-fw1.1.0.json"
DEVICE = "shellyplus1pm-aabbccddeeff"  # the fixture's device id

#: switch:0 in the full status the device answers Shelly.GetStatus with: above the 5 W
#: threshold, so the channel is active from the start.
STATUS_SWITCH = {"apower": 412.7, "voltage": 231.4, "current": 1.79}
ENERGY_TOTAL = 5123.456
#: The NotifyStatus the device sends after the bootstrap: the minute's latest active power.
UPDATE = {"switch:0": {"id": 0, "apower": 433.1}}
#: The minute's row after its timestamp: apower from the update, the rest from the status.
ROW_VALUES = f"{DEVICE},0,433.1,231.4,1.79,5123.456"

#: What a client's default configuration offers (and the server must decline).
DEFLATE = "permessage-deflate"


def device_plan() -> dict[str, Any]:
    """The device a client script plays: its id, its full status and its update."""
    fixture = load_fixture(FIXTURE)
    assert fixture["shelly"]["id"] == DEVICE, fixture["shelly"]["id"]
    status: dict[str, Any] = fixture["status"]
    switch = status["switch:0"]
    switch.update(STATUS_SWITCH)
    switch["aenergy"]["total"] = ENERGY_TOTAL
    return {"device_id": DEVICE, "status": status, "update": UPDATE}
