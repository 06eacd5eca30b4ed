"""The dashboard in a real browser while a real run writes to the database (issue 13, 6).

Headless Chromium (Debian's ``chromium`` package, installed by scripts/test.sh; driven by
Playwright with ``executable_path``, Playwright's own browser download is never used) opens
the dashboard served in-process on 127.0.0.1 while :class:`dabc.ABCSMC` runs in a
background thread with a model that sleeps, so that each generation takes about half a
second. The test asserts on the page's DOM: the run is listed, the generation counter grows
without a reload, and the "stop after this generation" button stops the run after its
current generation (status, stop reason and steering log checked in the database). Every
request the page makes is recorded: none may leave the host. A screenshot is taken on the
way, into the test's folder; with ``DABC_UPDATE_FIGURES=1`` it replaces
docs/figures/dashboard.png (so a test run never changes a tracked file by itself).
"""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

import dabc
from dabc.errors import InputError
from dabc.viz import dashboard, dashboard_data
from watch import BackgroundRun

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "dashboard.png"
TOKEN = "browser-test-token-0123456789"
SLEEP_S = 0.003
POP = 50

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is missing (Debian's chromium package; "
                                "bash scripts/test.sh installs it)")


def _model(p, rng):
    time.sleep(SLEEP_S)
    return {"y": p["theta"] + 0.5 * rng.standard_normal(),
            "z": p["phi"] + 0.5 * rng.standard_normal()}


def _abc() -> dabc.ABCSMC:
    prior = dabc.Prior(theta=dabc.RV("uniform", 0, 4), phi=dabc.RV("uniform", 0, 4))
    eps = dabc.ListEpsilon([float("inf"), 2.5, 2.0, 1.6, 1.3] + [1.1] * 300)
    return dabc.ABCSMC(_model, prior, population_size=POP, sampler=dabc.SingleCoreSampler(),
                       seed=5, epsilon=eps, model_names=["sleepy"], progress=False)


class Background(BackgroundRun):
    """The dashboard's live run in a daemon thread (see :class:`watch.BackgroundRun`)."""

    def __init__(self, db: Path):
        super().__init__(_abc(), {"y": 2.0, "z": 1.0}, db, max_generations=300,
                         steering=True)


def _wait(what, timeout: float = 30, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = what()
        except InputError:  # the database or its first run is not there yet
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _stored(db: Path) -> int:
    h = dabc.History(f"sqlite:///{db}")
    return h.max_t if h.id is not None else -1


@pytest.mark.timeout(120)
def test_the_dashboard_follows_and_stops_a_live_run_in_chromium(tmp_path):
    db = tmp_path / "live.db"
    bg = Background(db)
    dashboard_data.clear_caches()
    srv = None
    try:
        _wait(lambda: _stored(db) >= 0)
        srv = dashboard.start(db, port=0, token=TOKEN)
        requests: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1450})
                page.on("request", lambda r: requests.append(r.url))
                page.goto(srv.url)
                # the runs page lists the run, running
                row = page.locator("#run-row-1")
                row.wait_for(timeout=15000)
                assert "running" in row.inner_text()
                page.click("#run-link-1")  # a client-side link: no reload from here on
                page.wait_for_url("**/run/1")
                page.evaluate("window.__no_reload = 'still here'")
                counter = page.locator("#live-generation")
                counter.wait_for(timeout=15000)
                first = int(counter.inner_text())
                page.wait_for_function(
                    "n => Number(document.querySelector('#live-generation')?.innerText) > n",
                    arg=first + 1, timeout=20000)
                assert int(counter.inner_text()) >= first + 2
                assert page.evaluate("window.__no_reload") == "still here"
                # the posterior plots draw; then the screenshot
                page.wait_for_function(
                    "() => document.querySelectorAll('#marginals-graph .scatterlayer .trace')"
                    ".length >= 2 && document.querySelectorAll('#pair-graph .hm, "
                    "#pair-graph .heatmaplayer image').length >= 1", timeout=15000)
                page.wait_for_timeout(600)
                # a moment with the generation in progress shown (not "starting")
                page.wait_for_function("() => document.querySelector('#live-accepted')",
                                       timeout=10000, polling=50)
                shot = (FIGURE if os.environ.get("DABC_UPDATE_FIGURES") == "1"
                        else tmp_path / "dashboard.png")
                page.screenshot(path=str(shot), full_page=True)
                # stop after this generation
                assert page.locator("#stop").is_enabled()
                page.click("#stop")
                message = page.locator("#steer-message")
                page.wait_for_function(
                    "() => document.querySelector('#steer-message').innerText"
                    ".includes('Requested stop')", timeout=10000)
                at = _stored(db)  # the request is in; the generation in progress is at+1
                assert "Requested stop (request 1)" in message.inner_text()
                h = bg.join()
                assert h.max_t in (at, at + 1), (at, h.max_t)
                # the page shows the end without a reload
                page.wait_for_function(
                    "() => document.querySelector('#run-status')?.innerText === 'done'",
                    timeout=10000)
                page.wait_for_function(
                    "() => document.querySelector('#events').innerText"
                    ".includes('stopping after generation')", timeout=10000)
                assert page.locator("#stop").is_disabled()
                assert page.evaluate("window.__no_reload") == "still here"
            finally:
                browser.close()
    finally:
        if srv is not None:
            srv.stop()
        if bg.thread.is_alive():  # a failure above: end the run through its own steering
            try:
                dabc.History(f"sqlite:///{db}").request_control("stop", source="test cleanup")
            except InputError:
                pass
            bg.thread.join(30)
    row = h.all_runs().set_index("id").loc[h.id]
    assert row["status"] == "done"
    assert row["stop_reason"] == f"stopped from dashboard 127.0.0.1 after generation {h.max_t}"
    log = h.events()
    assert list(log["action"]) == ["stop"] and list(log["source"]) == ["dashboard 127.0.0.1"]
    assert log["outcome"][0] == f"stopping after generation {h.max_t}"
    assert h.max_t < 100  # it did not run on to its own limit
    hosts = {urllib.parse.urlsplit(u).hostname for u in requests}
    assert requests and hosts <= {"127.0.0.1", "localhost"}, hosts
    paths = {urllib.parse.urlsplit(u).path for u in requests}
    assert "/_dash-update-component" in paths
    assert any(p.endswith("plotly.min.js") for p in paths)  # plotly.js from the package
