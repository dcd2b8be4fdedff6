"""
The dashboard behind C{--web-auth}, in a real browser: headless Chromium looks at
C{/dashboard/} of a real C{twistd -n shellylog} whose password file Apache's C{htpasswd}
made, while the simulator plays a pump against it (both ten times faster under
libfaketime).

Without credentials the browser gets the 401 challenge and no page. With them (sent by
Chromium with every request, as it does once a person has answered its password dialog:
here through the DevTools protocol, since a headless browser shows no dialog), the page
loads, and its own requests (C{../api/fleet}, C{../api/day}) pass too: the fleet is shown
and polled, the pump's day is drawn. A wrong password is refused, counted and logged.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred

from shellylog.simulate.model import device_id
from shellylog.simulate.profiles import PROFILES
from tests.support.chromium import chromium_driver, require_chromium, severe_console_entries
from tests.support.fleet import spawn_simulator
from tests.support.processes import RealReactorTestCase, spawn_twistd, wait_for
from tests.support.tools import faketime_library
from tests.system.test_webauth import htpasswd

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

PUMP = device_id(PROFILES["pump"], 0)
FAKETIME = "@2026-06-01 11:57:00 x10"
USER, PASSWORD = "alice", "a long enough password"

#: What the page shows, in one round trip.
SHOWN = """
const fleet = document.querySelector('#fleet');
const chart = document.querySelector('#chart');
const updated = document.querySelector('#updated');
return {
  fleet: fleet !== null,
  devices: fleet ? [...fleet.querySelectorAll('tbody[data-device]')].map(
    (b) => b.dataset.device) : [],
  polls: updated ? Number(updated.dataset.polls) : 0,
  chart_date: chart ? chart.dataset.date : null,
  text: document.body ? document.body.innerText.slice(0, 200) : '',
};
"""


def authorization(user: str, password: str) -> str:
    """The C{Authorization} header's value of Basic credentials."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def send_credentials(driver: WebDriver, value: str | None) -> None:
    """Chromium sends C{Authorization: value} with every request from now (none: none)."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                           {"headers": {} if value is None else {"Authorization": value}})


def shown(driver: WebDriver) -> dict[str, Any]:
    """What the page shows now (L{SHOWN})."""
    result: dict[str, Any] = driver.execute_script(SHOWN)
    return result


class DashboardBehindPasswordTests(RealReactorTestCase):
    """C{--web-auth}: the dashboard in Chromium, without and with the password."""

    timeout = 120

    def setUp(self) -> None:
        require_chromium()
        faketime_library()
        super().setUp()
        self.passwords = os.path.join(self.folder, "htpasswd")
        htpasswd("-B", "-C", "5", "-b", "-c", self.passwords, USER, PASSWORD)

    def test_dashboard_behind_password(self) -> Deferred[None]:
        return ensureDeferred(self._behind_password())

    async def _behind_password(self) -> None:
        server = spawn_twistd(self, self.folder, [
            "--csv", os.path.join(self.folder, "log.csv"), "--web-auth", self.passwords],
            faketime=FAKETIME)
        port = await server.listening
        base = f"http://127.0.0.1:{port}"
        spawn_simulator(self, self.folder, f"ws://127.0.0.1:{port}/ws", ["pump"], 3, FAKETIME)
        driver = chromium_driver(os.path.join(self.folder, "chromium"))
        self.addCleanup(driver.quit)
        page = f"{base}/dashboard/#device={PUMP}&channel=switch:2"

        # No credentials: the challenge, and no page (no script ran, no table).
        driver.get(page)
        self.assertFalse(shown(driver)["fleet"], shown(driver))

        # A wrong password: refused too, and counted.
        send_credentials(driver, authorization(USER, "not the password"))
        driver.get(page)
        self.assertFalse(shown(driver)["fleet"], shown(driver))
        await wait_for(lambda: "refused web credentials" in server.text(), 10, "the refusal logged")

        # The right one: the page, and its own requests to the API pass. (The 401s above
        # are in the console: read, and so dropped, first.)
        severe_console_entries(driver)
        send_credentials(driver, authorization(USER, PASSWORD))
        driver.get(page)
        await wait_for(lambda: shown(driver)["devices"] == [PUMP], 30, "the pump shown")
        first = shown(driver)["polls"]
        await wait_for(lambda: shown(driver)["polls"] >= first + 2, 30, "the fleet polled")
        await wait_for(lambda: shown(driver)["chart_date"] == "2026-06-01", 30,
                       "the pump's day drawn")
        self.assertEqual(severe_console_entries(driver), [])
        self.assertIn("refused web credentials", server.text())
        self.assertNotIn("not the password", server.text())
