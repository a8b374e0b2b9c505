"""Headless Chromium for the browser tests (Debian's chromium + chromium-driver, driven by Selenium).

When Chromium is missing the test fails with the install command (TOWERFLOW_SKIP_BROWSER=1 skips it on purpose).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
# For every chart: its on-screen box, and each polyline's and path's geometric box.
MEASURE_CHARTS = """
return Array.from(document.querySelectorAll('svg.chart')).map(svg => {
  const box = svg.getBoundingClientRect();
  const shapes = Array.from(svg.querySelectorAll('polyline, path, rect.bar')).map(shape => {
    const b = shape.getBBox();
    return {tag: shape.tagName, cls: shape.getAttribute('class') || '', width: b.width, height: b.height};
  });
  return {cls: svg.getAttribute('class'), attempt: svg.dataset.attempt || null,
          width: box.width, height: box.height, shapes: shapes};
});
"""


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    if os.environ.get("TOWERFLOW_SKIP_BROWSER") == "1":
        pytest.skip("TOWERFLOW_SKIP_BROWSER=1: browser test skipped on request")
    pytest.fail(f"headless Chromium is missing (chromium={chromium}, chromedriver={driver}); install it with: "
                f"{INSTALL}  (or set TOWERFLOW_SKIP_BROWSER=1 to skip on purpose)", pytrace=False)


@contextmanager
def headless_chromium(profile: Path, window: str = "1100,900") -> Iterator[Any]:
    """A Selenium driver on a fresh headless Chromium profile; fails (in the test) when Chromium is missing."""
    chromium, driver_path = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def full_page_screenshot(browser, path: Path) -> Path:
    """The whole page as a PNG (not just the window), kept as a test artifact."""
    page = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(page["data"]))
    return path
