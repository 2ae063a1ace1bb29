"""The console in a real browser (Debian's headless chromium) during a real MQTT federation.

One federation for the module (a mosquitto, 12 simulated MCUs, an Oxigraph registry that picks
the devices, the round loop with the console as an observer, the console sharing the server's
store): the rounds advance on an open page without a reload, a killed device turns offline, the
excluded devices say why in the server's own words, a named query runs from its form, a write
without the token is refused, and the run's page shows the lineage the registry returns.

``TINYFLEET_CONSOLE_SCREENSHOT=docs/console.png`` also saves the Fleet page's screenshot there.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from console_browser import chromium, mark_page, same_page, wait_until
from live_federation import FEDERATION, LiveFederation

from edge.identity import device_iri

pytestmark = pytest.mark.slow  # a federation and a browser: about a minute

TOKEN = "console-test-token"
LAYERS = (1, 64, 64, 1)  # its on-device training needs more RAM than a Nano 33 BLE, a Pico W or an STM32F746 has free
DEVICES = 12  # profiles cycle nano33ble, esp32s3, rp2040, stm32f746: sine-1, sine-5 and sine-9 are eligible
KILLED = "sine-9"
ROUNDS = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    with LiveFederation(root, devices=DEVICES, rounds=ROUNDS, per_round=2, layer_sizes=LAYERS, token=TOKEN) as live:
        yield live


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def _text(driver, css: str) -> str:
    found = driver.find_elements("css selector", css)
    return found[0].text if found else ""


def test_the_rounds_advance_on_an_open_page(run, browser) -> None:
    browser.get(f"{run.handle.url}/federations/{FEDERATION}")
    assert _text(browser, "#rounds-done") == "0"
    mark_page(browser)
    wait_until(browser, lambda d: _text(d, "#live") == "live", 20, "the event stream connecting")
    run.start_rounds()
    wait_until(browser, lambda d: int(_text(d, "#rounds-done") or 0) >= 2, 120, "two rounds showing")
    assert same_page(browser), "the page reloaded instead of updating in place"
    points = browser.find_element("css selector", "#chart-loss polyline.series-0").get_attribute("points")
    assert len(points.split()) >= 2  # the loss chart grew with the rounds
    first_row = browser.find_elements("css selector", "#rounds tbody tr")[-1].text.split()
    assert first_row[0] == "1" and first_row[1] == "2"  # round 1, two participants


def test_a_killed_device_goes_offline(run, browser) -> None:
    browser.get(f"{run.handle.url}/fleet")
    row = f'tr[data-device="{KILLED}"]'
    wait_until(browser, lambda d: d.find_element("css selector", row).get_attribute("data-online") == "true", 30,
               f"{KILLED} online")
    mark_page(browser)
    run.fleet.devices[KILLED].crash()  # the socket drops without DISCONNECT: the broker publishes the Last Will
    wait_until(browser, lambda d: d.find_element("css selector", row).get_attribute("data-online") == "false", 30,
               f"{KILLED} shown offline")
    assert same_page(browser)
    assert browser.find_element("css selector", f"{row} .status").text == "offline"
    others = browser.find_elements("css selector", 'tr[data-online="true"]')
    assert len(others) == DEVICES - 1


def test_excluded_devices_say_why_in_the_servers_words(run, browser) -> None:
    run.wait(180)  # the server's selection has judged every device by now
    browser.get(f"{run.handle.url}/fleet?eligibility=excluded")
    shown = {r.get_attribute("data-device"): r for r in browser.find_elements("css selector", "#fleet tbody tr")}
    excluded = {f"sine-{s}" for s in range(DEVICES) if s % 4 != 1}
    assert set(shown) == excluded
    for device in ("sine-0", "sine-2", "sine-3"):
        reason = shown[device].find_element("css selector", ".reason").text
        assert reason == run.selection.excluded[device], device  # the same words as the server's log line
    assert "usable RAM 176,128 B <" in shown["sine-0"].find_element("css selector", ".reason").text
    browser.get(f"{run.handle.url}/fleet?eligibility=eligible&profile=esp32s3")
    assert {r.get_attribute("data-device") for r in browser.find_elements("css selector", "#fleet tbody tr")} == \
        {"sine-1", "sine-5", "sine-9"}


def test_a_named_query_runs_from_its_form(run, browser) -> None:
    browser.get(f"{run.handle.url}/registry")
    form = browser.find_element("css selector", 'form.named[data-query="models-for-device"]')
    form.find_element("css selector", 'input[name="p.device"]').send_keys(device_iri("sine-1"))
    form.find_element("css selector", "button").click()
    wait_until(browser, lambda d: d.find_elements("css selector", "#named-rows tbody tr"), 30, "the query's rows")
    rows = [r.text for r in browser.find_elements("css selector", "#named-rows tbody tr")]
    assert any("sine-mlp-1-64-64-1-train" in r for r in rows), rows
    assert all(device_iri("sine-1") in r for r in rows)


def test_a_write_without_the_token_is_refused(run, browser) -> None:
    browser.get(f"{run.handle.url}/registry")
    browser.find_element("css selector", "#update-form button").click()
    wait_until(browser, lambda d: _text(d, "#write-result"), 30, "the registry's answer")
    assert "refused by the registry: 401 bearer token required" in _text(browser, "#write-result")
    # the registry's own API behind the console refuses it too, and takes it with the token
    update = {"update": 'INSERT DATA { <urn:x:console> <urn:x:said> "hello" }'}
    assert httpx.post(f"{run.handle.url}/api/registry/sparql", data=update).status_code == 401
    wrong = httpx.post(f"{run.handle.url}/api/registry/sparql", data=update, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["content-type"].startswith("application/problem+json")
    right = httpx.post(f"{run.handle.url}/api/registry/sparql", data=update, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 204
    ask = httpx.get(f"{run.handle.url}/api/registry/sparql", params={"query": "ASK { <urn:x:console> ?p ?o }"},
                    headers={"Accept": "application/sparql-results+json"})
    assert ask.json()["boolean"] is True


def test_the_run_page_shows_its_versions_lineage(run, browser) -> None:
    run.wait(180)
    browser.get(f"{run.handle.url}/federations/{FEDERATION}")
    wait_until(browser, lambda d: _text(d, "#rounds-done") == str(ROUNDS), 30, "every round")
    rows = [r.find_elements("css selector", "td") for r in browser.find_elements("css selector", "#lineage tbody tr")]
    numbers = [int(cells[2].text) for cells in rows]
    assert numbers == list(range(ROUNDS, -1, -1))  # model-lineage: newest first, back to the initial version
    assert rows[0][0].text.endswith(f"/{FEDERATION}/version/{ROUNDS}")
    participants = rows[0][4].text.split()
    assert len(participants) == 2 and set(participants) <= {"sine-1", "sine-5", "sine-9"}


def test_screenshot_of_the_fleet(run, browser, tmp_path) -> None:
    run.wait(180)
    browser.set_window_size(1440, 1200)
    browser.get(f"{run.handle.url}/fleet")
    wait_until(browser, lambda d: d.find_elements("css selector", "#fleet tbody tr"), 30, "the fleet table")
    target = Path(os.environ.get("TINYFLEET_CONSOLE_SCREENSHOT") or tmp_path / "console.png")
    assert browser.save_screenshot(str(target))
    assert target.stat().st_size > 10_000
