"""
The dashboard in a real browser: headless Chromium (Debian's, driven through Selenium and
Debian's chromedriver) looks at C{/dashboard/} of a real C{twistd -n shellylog} while the
simulator's command line plays a mixed fleet against it, both ten times faster under
libfaketime.

The pump's earlier minutes of the (faked) day are in the CSV file before the server starts,
written by the project's own code (the simulator's pump through the whole in-memory server,
L{tests.support.fleet.seed_csv}), so that its chart and its runs table are full; the server
goes on with the file.

The server runs on the faked clock and Chromium on the real one: the page takes the day
from the server (C{/api/fleet}'s C{today}), and so does the test, which never compares with
the browser's clock.

Each test starts its own server and fleet, and one Chromium, and checks several things in
sequence on them: starting them costs seconds, each check less.

C{SHELLYLOG_SCREENSHOT_DIR=docs} makes the screenshot test write its desktop and phone
screenshots there (C{dashboard.png}, C{dashboard-phone.png}): the README's.
"""

from __future__ import annotations

import json
import os
import urllib.request
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater

from shellylog.report.output import run_values
from shellylog.report.rows import read_rows
from shellylog.report.runs import RunBuilder
from shellylog.simulate.model import device_id
from shellylog.simulate.profiles import PROFILES
from tests.support.chromium import (
    DESKTOP,
    PHONE,
    chromium_driver,
    emulate,
    require_chromium,
    severe_console_entries,
    unemulate,
)
from tests.support.fleet import day_readings, seed_csv, spawn_simulator
from tests.support.processes import RealReactorTestCase, spawn_twistd, wait_for
from tests.support.screenshots import Box, blank_regions, image_size, scaled_box
from tests.support.tools import faketime_library

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

#: The fleet: device number n plays FLEET[n]. A pump first (its switch:2 runs 3 minutes,
#: rests 5), then one device of each other metering family.
FLEET = ["pump", "pro4pm", "pmmini", "pro3em", "proem50", "dualcover", "rgbwpm"]
DEVICES = [device_id(PROFILES[name], n) for n, name in enumerate(FLEET)]
PUMP = DEVICES[0]
#: The pump's channel, as the API names it and as the CSV file does.
PUMP_CHANNEL = "switch:2"
PUMP_CELL = "2"
SEED = 3
#: The server's and the simulator's clock: from 11:57 UTC, ten times faster.
FAKETIME = "@2026-06-01 11:57:00 x10"
DAY = date(2026, 6, 1)
UTC = ZoneInfo("UTC")
#: The pump's seeded minutes: from 06:00 to 11:50 of the day, before the server starts.
SEEDED_FROM = datetime(2026, 6, 1, 6, 0, 5, tzinfo=UTC).timestamp()
SEEDED_TO = datetime(2026, 6, 1, 11, 50, tzinfo=UTC).timestamp()
SERVER_ARGS = ["--channels", "*"]

#: The source tree these tests are in, where a relative C{SHELLYLOG_SCREENSHOT_DIR} is.
SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Seconds (real) the page gets to show something it should.
PATIENCE = 30.0

#: What the page shows, in one round trip.
STATE = """
const one = (selector) => document.querySelector(selector);
const chart = one('#chart');
const updated = one('#updated');
const error = one('#error');
return {
  devices: [...document.querySelectorAll('#fleet tbody[data-device]')].map(
    (t) => [t.dataset.device, t.dataset.connected]),
  channels: [...document.querySelectorAll('#fleet tr.channel')].map((r) => ({
    device: r.dataset.device, channel: r.dataset.channel, running: r.dataset.running,
    power: r.dataset.power, cell: (r.querySelector('td.power') || {}).textContent})),
  chart: chart ? {...chart.dataset} : null,
  polls: updated ? Number(updated.dataset.polls || 0) : null,
  updated: updated ? updated.textContent : null,
  error: error ? error.textContent : null,
  runs: [...document.querySelectorAll('#runs tbody tr.run')].map((r) => r.dataset.start),
  hash: location.hash,
  href: location.href,
  marker: window.shellylogTestMarker || null,
};
"""

#: The rectangles (viewport, CSS pixels) of the chart, of the fleet table's bodies and of
#: the runs table's body, and the device pixels per CSS pixel.
RECTANGLES = """
const rect = (e) => { const r = e.getBoundingClientRect();
  return {left: r.left, top: r.top, width: r.width, height: r.height}; };
const union = (elements) => {
  const rects = [...elements].map(rect).filter((r) => r.width > 0 && r.height > 0);
  if (!rects.length) return {left: 0, top: 0, width: 0, height: 0};
  const left = Math.min(...rects.map((r) => r.left));
  const top = Math.min(...rects.map((r) => r.top));
  return {left, top, width: Math.max(...rects.map((r) => r.left + r.width)) - left,
          height: Math.max(...rects.map((r) => r.top + r.height)) - top};
};
return {chart: union(document.querySelectorAll('#chart')),
        fleet: union(document.querySelectorAll('#fleet tbody')),
        runs: union(document.querySelectorAll('#runs tbody')),
        scale: window.devicePixelRatio};
"""

#: The page's width and what is wider.
WIDTHS = """
const chart = document.querySelector('#chart').getBoundingClientRect();
const canvases = [...document.querySelectorAll('#chart canvas')].map(
  (c) => c.getBoundingClientRect().right);
return {inner: window.innerWidth, scroll: document.documentElement.scrollWidth,
        chart_left: chart.left, chart_right: chart.right, chart_height: chart.height,
        canvas_right: Math.max(0, ...canvases), canvases: canvases.length};
"""


def fetch_json(url: str) -> Any:
    """GET C{url}, a JSON answer (blocking: a quick question to a local server)."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def state(driver: WebDriver) -> dict[str, Any]:
    """What the page shows now (L{STATE})."""
    shown: dict[str, Any] = driver.execute_script(STATE)
    return shown


def hash_for(day: str | None = None) -> str:
    """The URL hash that selects the pump's channel (on C{day})."""
    return f"#device={PUMP}&channel={PUMP_CHANNEL}" + (f"&date={day}" if day else "")


class DashboardBrowserTests(RealReactorTestCase):
    """The dashboard of a live fleet, in headless Chromium."""

    timeout = 150

    def setUp(self) -> None:
        require_chromium()
        faketime_library()
        super().setUp()

    async def start(self) -> tuple[str, WebDriver]:
        """
        Seed the pump's morning, start the server on that file and the fleet, and a
        Chromium; the base URL of the server and the browser.
        """
        self.seeded = seed_csv(self, "pump", 0, SEED, SEEDED_FROM, SEEDED_TO, *SERVER_ARGS)
        with open(self.seeded, encoding="utf-8", newline="") as f:
            self.seeded_runs = [run_values(run, UTC) for run in RunBuilder().runs(
                read_rows(f, self.seeded, self.fail)) if run.channel == PUMP_CELL]
        self.assertGreater(len(self.seeded_runs), 30)
        self.server = spawn_twistd(self, self.folder, ["--csv", self.seeded, *SERVER_ARGS],
                                   faketime=FAKETIME)
        port = await self.server.listening
        base = f"http://127.0.0.1:{port}"
        spawn_simulator(self, self.folder, f"ws://127.0.0.1:{port}/ws", FLEET, SEED, FAKETIME)
        driver = chromium_driver(os.path.join(self.folder, "chromium"))
        self.addCleanup(driver.quit)
        self.addCleanup(self.check_server_log)
        return base, driver

    def check_server_log(self) -> None:
        """
        The server took the seeded file, the fleet and the browser without a warning or an
        error. A browser polls over one connection (past the access log's cap of lines per
        connection) and opens spare connections it may never use: neither is a warning.
        """
        log = self.server.text()
        self.assertEqual([line for line in log.splitlines() if any(
            f"#{level}]" in line for level in ("warn", "error", "critical"))], [], log)

    def pump_rows(self) -> int:
        """The pump channel's rows of the day in the CSV file, now, with a power."""
        return sum(1 for reading in day_readings(self.seeded, PUMP, PUMP_CELL, DAY, UTC)
                   if reading[3] is not None)

    async def until(self, driver: WebDriver, check: Any, what: str,
                    seconds: float = PATIENCE) -> dict[str, Any]:
        """
        Wait until C{check(shown)} holds for what the page shows (L{state}); that. The
        failure says what the page showed last.
        """
        last: list[dict[str, Any]] = []

        def holds() -> bool:
            shown = state(driver)
            last[:] = [shown]
            return bool(check(shown))

        try:
            await wait_for(holds, seconds, what)
        except AssertionError as e:
            raise AssertionError(f"{e}; the page showed {last[0] if last else None}") from None
        return last[0]

    async def open_selected(self, driver: WebDriver, base: str, day: str | None) -> dict[str, Any]:
        """
        Load the dashboard afresh with the pump's channel selected by the URL hash (on
        C{day}); once its chart of that day is drawn, what the page shows.
        """
        driver.get("about:blank")
        driver.get(f"{base}/dashboard/{hash_for(day)}")
        wanted = {"device": PUMP, "channel": PUMP_CHANNEL}
        return await self.until(driver, lambda s: s["chart"] and all(
            s["chart"].get(k) == v for k, v in wanted.items()) and s["chart"].get("points")
            not in (None, "") and (day is None or s["chart"].get("date") == day),
            f"the chart of {PUMP} {PUMP_CHANNEL} on {day or 'today'}")

    # -- the live page ------------------------------------------------------------------

    def test_live_dashboard(self) -> Deferred[None]:
        """
        A browser that asks for C{/} is sent to the dashboard; it shows every device of the
        fleet, connected; a channel's power changes on screen without a reload; selecting
        the pump's channel (a click, or the URL hash) draws its day's points, as many as the
        CSV file has, and lists its runs; another day has its own (none); at a phone's
        width nothing scrolls sideways and the chart fits; the console has no error.
        """
        return ensureDeferred(self.live_dashboard())

    async def live_dashboard(self) -> None:
        base, driver = await self.start()
        fleet = fetch_json(f"{base}/api/fleet")
        today = fleet["today"]
        self.assertEqual(today, DAY.isoformat())

        # A browser's / (it asks for HTML) is sent to the dashboard.
        driver.get(f"{base}/")
        self.assertEqual(driver.current_url, f"{base}/dashboard/")

        # Every device of the fleet, connected.
        shown = await self.until(driver, lambda s: sorted(s["devices"]) == sorted(
            [d, "true"] for d in DEVICES), "every device of the fleet, connected")
        self.assertEqual(sorted({c["device"] for c in shown["channels"]}), sorted(DEVICES))
        self.assertIn(PUMP_CHANNEL, {c["channel"] for c in shown["channels"]
                                     if c["device"] == PUMP})
        self.assertFalse(shown["error"], shown)

        # The power changes on screen, polled, without a reload (the marker would be gone).
        driver.execute_script("window.shellylogTestMarker = 'still here';")
        before = await self.until(driver, lambda s: s["polls"] >= 1, "a fleet poll")
        powers = {(c["device"], c["channel"]): c for c in before["channels"]}

        def changed(shown: dict[str, Any]) -> list[dict[str, Any]]:
            return [c for c in shown["channels"] if shown["polls"] > before["polls"]
                    and (c["device"], c["channel"]) in powers
                    and c["power"] != powers[c["device"], c["channel"]]["power"]
                    and c["cell"] != powers[c["device"], c["channel"]]["cell"]]

        after = await self.until(driver, changed, "a channel's power to change on screen")
        self.assertEqual(after["marker"], "still here")
        for channel in changed(after):
            if channel["power"]:
                # data-power is the number as JSON gives it; the cell shows it in watts.
                float(channel["power"])
                self.assertIn("W", channel["cell"], channel)
        # It shows the server's time (faked), not the browser's.
        self.assertIn(today, after["updated"])

        # Selecting the pump's channel by a click: its day's points, as many as the CSV file
        # has rows of it (give or take the minute written meanwhile), and its runs.
        rows_before = self.pump_rows()
        driver.find_element(
            "css selector", f'#fleet tr.channel[data-device="{PUMP}"]'
            f'[data-channel="{PUMP_CHANNEL}"]').click()
        shown = await self.until(driver, lambda s: s["chart"] and s["chart"].get(
            "device") == PUMP and s["chart"].get("channel") == PUMP_CHANNEL and s["chart"].get(
            "points") not in (None, "") and s["runs"], "the pump's chart and runs")
        rows_after = self.pump_rows()
        points = int(shown["chart"]["points"])
        self.assertTrue(rows_before <= points <= rows_after, (rows_before, points, rows_after))
        self.assertEqual(shown["chart"]["date"], today)
        selected = parse_qs(shown["hash"].lstrip("#"))
        self.assertEqual((selected["device"], selected["channel"]), ([PUMP], [PUMP_CHANNEL]))
        # Every run of the seeded morning is in the table.
        self.assertLessEqual({run["start"] for run in self.seeded_runs}, set(shown["runs"]))
        self.assertEqual(shown["marker"], "still here")

        # The URL hash selects too: today, then the day before, which has no rows.
        shown = await self.open_selected(driver, base, today)
        self.assertGreaterEqual(int(shown["chart"]["points"]), rows_after)
        self.assertLessEqual({run["start"] for run in self.seeded_runs}, set(shown["runs"]))
        shown = await self.open_selected(driver, base, "2026-05-31")
        self.assertEqual((shown["chart"]["points"], shown["runs"]), ("0", []))
        self.assertEqual(driver.find_element("id", "day").get_attribute("value"), "2026-05-31")
        self.assertEqual(severe_console_entries(driver), [])

        # At a phone's width: nothing scrolls sideways, and the chart fits.
        emulate(driver, PHONE, mobile=True)
        try:
            shown = await self.open_selected(driver, base, None)
            self.assertGreaterEqual(int(shown["chart"]["points"]), rows_after)
            widths = driver.execute_script(WIDTHS)
            self.assertEqual(widths["inner"], PHONE[0], widths)
            self.assertLessEqual(widths["scroll"], widths["inner"], widths)
            self.assertGreaterEqual(widths["chart_left"], 0, widths)
            self.assertLessEqual(widths["chart_right"], widths["inner"], widths)
            self.assertGreater(widths["chart_height"], 50, widths)
            self.assertGreater(widths["canvases"], 0, widths)
            self.assertLessEqual(widths["canvas_right"], widths["inner"], widths)
        finally:
            unemulate(driver)
        self.assertEqual(severe_console_entries(driver), [])

    # -- filtering and paging the fleet ---------------------------------------------------

    def test_filter_and_pages(self) -> Deferred[None]:
        """
        Typing part of one device's id (in another case) in C{#filter} leaves that device
        alone in C{#fleet}; clearing it brings every device back. With a page of 3 devices
        (C{dashboard/?limit=3}), C{#more} says how many are shown of how many, and C{#next}
        and C{#prev} page through the fleet in the order of the ids; the pump's channel,
        selected by the URL hash, keeps its chart and runs on the pages without the pump;
        with everything shown, C{#more} is hidden.
        """
        return ensureDeferred(self.filter_and_pages())

    async def filter_and_pages(self) -> None:
        from selenium.webdriver.common.keys import Keys

        base, driver = await self.start()
        every = sorted(DEVICES)
        driver.get(f"{base}/dashboard/")
        await self.until(driver, lambda s: sorted(d for d, _ in s["devices"]) == every,
                         "every device of the fleet")
        self.assertFalse(driver.find_element("id", "more").is_displayed())

        # Part of one id, in capitals: that device alone.
        one = DEVICES[3]
        part = one[len("shelly"):-8].upper()
        self.assertEqual([d for d in DEVICES if part.lower() in d], [one])
        box = driver.find_element("id", "filter")
        self.assertEqual(box.get_attribute("type"), "search")
        box.send_keys(part)
        shown = await self.until(driver, lambda s: [d for d, _ in s["devices"]] == [one],
                                 f"only {one} for {part!r}")
        self.assertEqual({c["device"] for c in shown["channels"]}, {one})
        self.assertFalse(driver.find_element("id", "more").is_displayed())
        # Cleared, as a person does: every device again.
        box.send_keys(Keys.BACKSPACE * len(part))
        await self.until(driver, lambda s: sorted(d for d, _ in s["devices"]) == every,
                         "every device again, the filter cleared")

        # Pages of 3, the pump's channel selected (it is on the second page).
        driver.get("about:blank")
        driver.get(f"{base}/dashboard/?limit=3{hash_for()}")
        pages = [every[0:3], every[3:6], every[6:]]
        self.assertNotIn(PUMP, pages[0] + pages[2])
        more = driver.find_element("id", "more")

        def on_page(n: int) -> Any:
            return lambda s: ([d for d, _ in s["devices"]] == pages[n] and s["chart"]
                              and s["chart"].get("device") == PUMP and s["runs"])

        await self.until(driver, on_page(0), "the first page of 3, and the pump's chart")
        self.assertTrue(more.is_displayed())
        self.assertIn(f"showing 3 of {len(DEVICES)} devices", more.text)
        prev, following = driver.find_element("id", "prev"), driver.find_element("id", "next")
        self.assertFalse(prev.is_enabled())
        following.click()
        await self.until(driver, on_page(1), "the second page")
        following.click()
        await self.until(driver, on_page(2), "the last page, the pump's chart still there")
        self.assertIn(f"showing 1 of {len(DEVICES)} devices", more.text)
        self.assertFalse(following.is_enabled())
        prev.click()
        await self.until(driver, on_page(1), "back to the second page")
        # The pump's chart and runs stayed; the filter works on pages too.
        box = driver.find_element("id", "filter")
        box.send_keys(one[-12:])
        await self.until(driver, lambda s: [d for d, _ in s["devices"]] == [one],
                         "the filtered device, from the first page of the filter")
        self.assertFalse(more.is_displayed())
        self.assertEqual(severe_console_entries(driver), [])

    # -- screenshots --------------------------------------------------------------------

    def test_screenshots(self) -> Deferred[None]:
        """
        Screenshots of the pump's day, at a desktop's size and at a phone's, are not blank:
        the chart and the tables' rows hold ink of several colours. The same check fails on
        the page whose script did not load (the frame without what the script draws). With
        C{SHELLYLOG_SCREENSHOT_DIR} set, both screenshots are written there.
        """
        return ensureDeferred(self.screenshots())

    def screenshot(self, driver: WebDriver, regions: tuple[str, ...]) -> tuple[bytes, list[str]]:
        """A screenshot of the viewport, and the problems of its C{regions} (L{RECTANGLES})."""
        rectangles = driver.execute_script(RECTANGLES)
        png = driver.get_screenshot_as_png()
        boxes: dict[str, Box] = {name: scaled_box(rectangles[name], rectangles["scale"])
                                 for name in regions}
        return png, blank_regions(png, boxes)

    async def screenshots(self) -> None:
        base, driver = await self.start()
        folder = os.environ.get("SHELLYLOG_SCREENSHOT_DIR")

        # The desktop: the fleet, the chart, the runs.
        emulate(driver, DESKTOP, mobile=False)
        await self.open_selected(driver, base, None)
        await self.until(driver, lambda s: s["runs"] and s["polls"] >= 2,
                         "the runs, and two polls")
        png, problems = self.screenshot(driver, ("chart", "fleet", "runs"))
        self.assertEqual(problems, [])
        self.assertEqual(image_size(png), DESKTOP)
        self.write(folder, "dashboard.png", png)

        # A phone: scrolled to the chart's part of the page, the runs below the chart.
        try:
            emulate(driver, PHONE, mobile=True)
            await self.open_selected(driver, base, None)
            await self.until(driver, lambda s: s["runs"] and s["polls"] >= 1,
                             "the runs, and a poll")
            driver.execute_script(
                "const chart = document.querySelector('#chart');"
                "(chart.closest('section') || chart).scrollIntoView(true);")
            png, problems = self.screenshot(driver, ("chart", "runs"))
            self.assertEqual(problems, [])
            self.assertEqual(image_size(png), PHONE)
            self.write(folder, "dashboard-phone.png", png)
        finally:
            unemulate(driver)
        self.assertEqual(severe_console_entries(driver), [])

        # The page without its script (blocked): the same check finds it blank.
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*.js"]})
        driver.get("about:blank")
        driver.get(f"{base}/dashboard/{hash_for()}")
        # Time for the page's polls, had it a script.
        await deferLater(reactor, 3, lambda: None)
        _, problems = self.screenshot(driver, ("chart", "fleet", "runs"))
        self.assertEqual(len(problems), 3, problems)

    def write(self, folder: str | None, name: str, png: bytes) -> None:
        """
        Write the screenshot C{png} as C{folder/name}, if there is a folder (a relative
        one in the source tree: trial runs the tests in a folder of its own).
        """
        if not folder:
            return
        folder = os.path.join(SOURCE_TREE, folder)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(png)
