"""The operators' dashboard in a real headless Chromium: live numbers, and a position lookup with a token."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from app import topics as t
from app.settings import REPO_ROOT
from tests.e2e.harness import VIEWER, send, wait_for_master_views, wait_for_versions
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e

SCREENSHOT = REPO_ROOT / "docs" / "dashboard.png"
INSTALLER = REPO_ROOT / "deploy" / "install-chromium.sh"


def chromium_binary() -> str:
    """The system Chromium (CHROMIUM_BIN, else on PATH, else installed by deploy/install-chromium.sh)."""
    def find() -> str | None:
        if os.environ.get("CHROMIUM_BIN"):
            return os.environ["CHROMIUM_BIN"]
        return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)

    found = find()
    if found is None:
        result = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True, timeout=900,
                                check=False)
        found = find()
        if found is None:
            pytest.skip(f"Chromium is not installed and {INSTALLER.name} could not install it: "
                        f"{(result.stderr or result.stdout).strip()[-300:]}")
    return found


@pytest.fixture(scope="module")
def shop(bootstrap, pipeline):
    """Stock, a sale and two dead letters at a store, set up before the browser starts.

    Playwright's sync API runs an event loop in this thread, where the harness's `asyncio.run`
    cannot; so the broker is fed before the browser starts, and by a thread of its own afterwards.
    """
    s = Scenario("dash")
    store, busy, sku = s.loc("S1"), s.loc("S2"), s.sku(1)
    send(bootstrap, [s.item(1), s.location("S1"), s.location("S2")])
    wait_for_master_views(pipeline, [sku], [store, busy])
    send(bootstrap, [s.receipt(store, [(sku, 12, "7.25")], at=0),
                     s.pos(store, "SALE", [{"sku": sku, "quantity": 5, "unit_price": "19.99"}], at=10),
                     s.pos(store, "SALE", [{"sku": f"{s.name}-UNKNOWN", "quantity": 1, "unit_price": "1.00"}], at=11),
                     (t.WMS, store, b"{broken json")])
    wait_for_versions(bootstrap, {f"{sku}@{store}": 2})
    return {"s": s, "store": store, "busy": busy, "sku": sku}


@pytest.fixture(scope="module")
def browser(shop):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency: "
                                                                 "pip install -e '.[test]'")
    executable = chromium_binary()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


class Traffic(threading.Thread):
    """A steady trickle of receipts and sales while the page is open, so rates are not zero (own thread)."""

    def __init__(self, bootstrap: str, s: Scenario, store: str, sku: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.s, self.store, self.sku = bootstrap, s, store, sku
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            batch = [self.s.receipt(self.store, [(self.sku, 2, "7.00")], at=100 + n),
                     self.s.pos(self.store, "SALE", [{"sku": self.sku, "quantity": 1, "unit_price": "19.99"}],
                                at=100 + n)]
            send(self.bootstrap, batch)
            self.stop.wait(0.25)


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def test_dashboard_shows_live_numbers_and_looks_up_a_position(bootstrap, pipeline, shop, browser):
    s, store, busy, sku = shop["s"], shop["store"], shop["busy"], shop["sku"]
    traffic = Traffic(bootstrap, s, busy, sku)
    traffic.start()
    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    try:
        page.goto(pipeline.url + "/", wait_until="domcontentloaded")
        assert page.title().startswith("Stock sync")
        # Two refreshes (2 s apart) give rates; wait for traffic to show in them.
        page.wait_for_function("document.getElementById('last-refresh').textContent !== 'never'", timeout=20_000)
        page.wait_for_function(
            "(() => { const v = parseFloat(document.getElementById('events-rate').textContent);"
            " return v > 0; })()", timeout=30_000)
        assert float(text(page, "#events-total").rstrip("k")) > 0
        assert text(page, "#ready") == "ready"
        assert text(page, "#p50") != "–" and text(page, "#lag-total") != "–"
        page.wait_for_function("document.querySelector('#dlq-codes').textContent.includes('UNKNOWN_ITEM')",
                               timeout=20_000)
        assert "MALFORMED_JSON" in text(page, "#dlq-codes")

        # A wrong token is refused; the right one shows the position, and stays in sessionStorage only.
        page.fill("#sku", sku)
        page.fill("#location", store)
        page.fill("#token", "not-the-token")
        page.click("#lookup")
        page.wait_for_selector("#lookup-error", timeout=10_000)
        assert text(page, "#lookup-error").startswith("401")
        page.fill("#token", VIEWER)
        page.click("#lookup")
        page.wait_for_selector("#position-table", timeout=10_000)
        cell = lambda field: text(page, f"#position-table td[data-field={field}]")
        assert (cell("on_hand"), cell("available"), cell("version"), cell("avg_cost")) == ("7", "7", "2", "7.2500")
        assert page.evaluate("sessionStorage.getItem('stock-sync-token')") == VIEWER
        assert page.evaluate("localStorage.length") == 0

        time.sleep(2.5)  # one more refresh, so the screenshot shows settled numbers
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert SCREENSHOT.stat().st_size > 10_000
    finally:
        traffic.stop.set()
        traffic.join(timeout=10)
        page.close()
