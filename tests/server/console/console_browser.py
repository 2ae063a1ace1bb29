"""Debian's chromium, headless, driven by selenium through Debian's chromedriver: nothing is ever downloaded.

The driver and browser are named by path, and ``SE_OFFLINE`` tells selenium-manager not to look
anything up; a fresh profile directory per browser, and the options that stop chromium's own
background traffic (updates, sync, QUIC, first-run), so the only network is the console on loopback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OPTIONS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--window-size=1440,1000")


def chromium(profile_dir: Path) -> Any:
    """A headless chromium on a fresh profile in ``profile_dir``; the caller quits it."""
    for path in (CHROMIUM, CHROMEDRIVER):
        assert path.exists(), f"{path} is missing: `make system-deps` installs Debian's chromium and chromium-driver"
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager: never a network look-up
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (*OPTIONS, f"--user-data-dir={profile_dir}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait_until(driver: Any, condition: Callable[[Any], Any], timeout_s: float = 60.0, what: str = "") -> Any:
    """Poll ``condition(driver)`` until it is truthy (its value), or fail saying ``what`` did not happen."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        raise AssertionError(f"after {timeout_s} s: {what or 'the condition'} did not happen") from None


def mark_page(driver: Any) -> None:
    """Leave a marker in the page's JavaScript state: it survives live updates, not a reload."""
    driver.execute_script("window.__tinyfleetMarker = 'same page';")


def same_page(driver: Any) -> bool:
    return driver.execute_script("return window.__tinyfleetMarker || null;") == "same page"
