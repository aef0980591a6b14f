"""The dashboard in a real headless browser (Debian's chromium driven by selenium) over the
full default lab: the page shows every site, its strategy control changes the controller's
strategy, and cutting a link from the page changes the affected client's path on the page.

Screenshots are kept in results/test-artefacts/dashboard/ (HCLAB_ARTEFACTS overrides it).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from dashboard.server import serve_lab
from controllers.forwarding import make_lab
from tests.helpers import DEFAULT_TOPOLOGY, ROOT, SETTLE_S, wait_for
from tests.integration.conftest import NOTHING, lab_leftovers
from topologies.loader import load

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTEFACTS = Path(os.environ.get("HCLAB_ARTEFACTS", ROOT / "results" / "test-artefacts")) / "dashboard"
# The page must show a reroute within this long after the click (the bound).
PAGE_REROUTE_S = 2.0

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet,
              pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                                 reason="chromium and chromium-driver are not installed "
                                        "(./setup.sh installs them)")]


@pytest.fixture(scope="module")
def lab(no_lab_running):
    # Calibration only tunes the delays: the page's behaviour does not depend on it.
    with make_lab(load(DEFAULT_TOPOLOGY), calibrate=False, log=lambda *_: None) as running:
        yield running
    assert lab_leftovers() == NOTHING


@pytest.fixture(scope="module")
def server(lab):
    with serve_lab(lab, dashboard=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1150", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.get(server.url + "/")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def page_path(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    text = browser.find_element(By.ID, "client-path").get_attribute("data-path")
    return text.split(">") if text else []


def drawn(browser, selector: str, key: str) -> list[str]:
    """The data-KEY attribute of every element the selector finds, read at one moment."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.dataset[arguments[1]])",
        selector, key)


def choose(browser, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, select_id)).select_by_value(value)


def test_the_page_shows_every_site_of_the_topology_on_the_map(browser, lab):
    from selenium.webdriver.common.by import By

    # read in one script: the map is redrawn with every sample
    sites = wait_for(lambda: set(drawn(browser, "#sites [data-site]", "site")), SETTLE_S,
                     "sites drawn")
    assert sites == set(lab.topology.sites)
    assert set(drawn(browser, "#links [data-link]", "link")) == {k.name for k in lab.topology.links}
    assert browser.find_element(By.CSS_SELECTOR, "#outline path").get_attribute("d").count("M") > 10
    # a measured clinic round trip reaches the chart's legend
    wait_for(lambda: " ms" in browser.find_element(By.ID, "chart-legend").text,
             SETTLE_S, "a latency sample in the chart")
    browser.save_screenshot(str(ARTEFACTS / "normal.png"))


def test_switching_the_strategy_on_the_page_changes_the_controllers(browser, lab):
    from selenium.webdriver.common.by import By

    assert lab.controller.get("strategy")["name"] == "latency"
    try:
        choose(browser, "strategy", "hops")
        browser.find_element(By.ID, "strategy-apply").click()
        wait_for(lambda: lab.controller.get("strategy")["name"] == "hops", SETTLE_S,
                 "the controller on hops")
    finally:
        lab.controller.set_strategy("latency")
    wait_for(lambda: browser.find_element(By.ID, "strategy").get_attribute("value") == "latency",
             SETTLE_S, "the page back on latency")


def test_cutting_a_link_on_the_page_changes_the_clients_path_on_the_page(browser, lab):
    from selenium.webdriver.common.by import By

    choose(browser, "client", "cden")
    before = wait_for(lambda: page_path(browser), SETTLE_S, "cden's path on the page")
    link = next(k.name for k in lab.topology.links if {k.a, k.b} == set(before[:2]))
    choose(browser, "link", link)
    browser.find_element(By.ID, "link-cut").click()
    clicked = time.monotonic()
    try:
        after = wait_for(lambda: (p := page_path(browser)) != before and p, SETTLE_S,
                         "a new path for cden on the page")
        took = time.monotonic() - clicked
        assert set(before[:2]) not in [set(hop) for hop in zip(after, after[1:])], after
        assert after[0] == "clden"
        browser.save_screenshot(str(ARTEFACTS / "after-cut.png"))
        assert took < PAGE_REROUTE_S, f"the page showed the reroute after {took:.2f} s"
    finally:
        browser.find_element(By.ID, "link-restore").click()
    wait_for(lambda: page_path(browser) == before, SETTLE_S, "cden's path back after restore")
