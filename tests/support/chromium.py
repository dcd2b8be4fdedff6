"""
Headless Chromium driven through Selenium: Debian's C{chromium} through Debian's
C{chromedriver}, both named explicitly, so that Selenium Manager never looks for a browser or
a driver of its own (it would reach for the network, which this machine may not have).

A missing Chromium, chromedriver or Selenium skips on a developer's machine and fails in CI
(L{tests.support.tools.missing}).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tests.support.tools import missing, tool

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

#: Chromium's switches: headless, as root in a container (no sandbox, no GPU), and nothing
#: that reaches for the network by itself (this machine may have only loopback).
CHROMIUM_SWITCHES = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: A desktop's window, and a phone's viewport (CSS pixels).
DESKTOP = (1280, 900)
PHONE = (390, 844)


def require_chromium() -> tuple[str, str]:
    """
    The paths of Chromium and of chromedriver, with Selenium importable; or else
    L{missing}: a test calls it first, before it starts anything.
    """
    chromium = tool("chromium")
    chromedriver = tool("chromedriver", "chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing("selenium is not installed (the test extra: pip install '.[test]')")
    return chromium, chromedriver


def chromium_driver(folder: str, size: tuple[int, int] = DESKTOP) -> WebDriver:
    """
    A fresh headless Chromium (its profile and home in C{folder}, which must not exist),
    its window C{size}, the browser's console log kept (C{driver.get_log("browser")}).
    The caller quits it.
    """
    chromium, chromedriver = require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    home = os.path.join(folder, "home")
    os.makedirs(home)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for switch in [*CHROMIUM_SWITCHES, f"--user-data-dir={os.path.join(folder, 'data')}",
                   f"--window-size={size[0]},{size[1]}"]:
        options.add_argument(switch)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Its own home, so that it reads and writes nothing of the user's; Debian's launcher
    # would add CHROMIUM_FLAGS of the environment's.
    env = {key: value for key, value in os.environ.items() if key != "CHROMIUM_FLAGS"}
    env.update(HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
               XDG_CACHE_HOME=os.path.join(home, ".cache"))
    service = Service(executable_path=chromedriver, env=env,
                      log_output=os.path.join(folder, "chromedriver.log"))
    return webdriver.Chrome(options=options, service=service)


def emulate(driver: WebDriver, size: tuple[int, int], mobile: bool) -> None:
    """
    Show pages at C{size} (CSS pixels, one device pixel each), as a phone if C{mobile}
    (its viewport as the page's C{<meta name="viewport">} asks, touch); until L{unemulate}.
    """
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": mobile})


def unemulate(driver: WebDriver) -> None:
    """Back to the window's own size, after L{emulate}."""
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})


def severe_console_entries(driver: WebDriver) -> list[dict[str, Any]]:
    """
    The entries of the browser's console log at level C{SEVERE} (uncaught errors, failed
    loads, such as a C{/favicon.ico} that a page without an icon of its own makes Chromium
    ask for) since last asked.
    """
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return [entry for entry in entries if entry.get("level") == "SEVERE"]
