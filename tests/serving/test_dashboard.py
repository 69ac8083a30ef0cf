"""The dashboard end to end: `recengine serve` on a loopback port, driven by Debian's Chromium through Playwright."""

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from recengine.store import Store
from recengine.store.store import Impression
from recengine.trained import TrainedModel

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"the dashboard tests drive Debian's Chromium at {CHROMIUM}: install it with `apt-get install -y "
                f"chromium` (.ci/run does), and playwright with `pip install -e '.[dev]'` (never `playwright "
                f"install`)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' brings playwright")
expect = playwright.expect

#: Playwright's own browser download is never used: the system Chromium, headless, with nothing fetched.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DAY = 86_400
WAIT_MS = 10_000


@dataclass(frozen=True)
class Server:
    url: str
    store: str
    read: str
    write: str
    admin: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir) -> Iterator[Server]:
    """The planted world's training events spread over 20 days in a store, three model versions (the itemknn
    one active, which `serve` loads), and a read and a write key."""
    data = TrainedModel.load(model_dir).dataset
    store_url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'store.db'}"
    with Store.open(store_url) as store:
        frame = data.to_frame()
        # All before the newest training event, so the service reads none of them as posted since training.
        frame["timestamp"] = int(frame["timestamp"].max()) - (20 * DAY * np.arange(len(frame))[::-1]) // len(frame)
        store.add_events(frame)
        store.upsert_items(data.item_features)
        store.upsert_users(data.user_features)
        popular = store.register_model_version("popular", {})
        store.set_status(popular.id, "ready", {"ndcg@20": 0.081, "recall@20": 0.152})
        itemknn = store.register_model_version("itemknn", {}, str(model_dir))
        store.set_status(itemknn.id, "ready", {"ndcg@20": 0.214, "recall@20": 0.391})
        store.set_status(itemknn.id, "active")
        store.set_status(store.register_model_version("ease", {}).id, "failed", {"error": "out of memory"})
        read, write = store.create_api_key("dashboard", ["read"]), store.create_api_key("feeder", ["write"])
        admin = store.create_api_key("experimenter", ["admin"])
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "recengine.cli", "serve", "--store", store_url,
                                "--port", str(port), "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up within 60 s"
                time.sleep(0.2)
        yield Server(url, store_url, read, write, admin)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=False,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


@pytest.fixture()
def page(browser, server):
    """A fresh tab (a fresh sessionStorage: no key yet) on the dashboard."""
    page = browser.new_page()
    page.goto(server.url + "/")
    yield page
    page.close()


def sign_in(page, key: str) -> None:
    page.fill("#key-input", key)
    page.click("#key-form button")


def test_overview_and_models_show_the_store(page, server):
    sign_in(page, server.read)
    with Store.open(server.store) as store:
        counts, days = store.counts(), store.events()["timestamp"] // DAY
    for name in ("users", "items", "events"):
        expect(page.locator(f"[data-count={name}] b")).to_have_text(f"{counts[name]:,}", timeout=WAIT_MS)
    expect(page.locator("[data-count=serving] b")).to_have_text("itemknn")
    # One point a day on the line, from the first day with events to the last.
    expect(page.locator("#events-chart polyline")).to_have_count(1)
    assert len(page.locator("#events-chart polyline").get_attribute("points").split()) == days.max() - days.min() + 1

    page.click("nav a[href='#models']")
    rows = page.locator("#versions tbody tr")
    expect(rows).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#versions tr.active")).to_contain_text("itemknn")
    expect(page.locator("#versions tr.active")).to_contain_text("★ active")
    expect(page.locator("#versions thead")).to_contain_text("ndcg@20")
    expect(page.locator("#versions thead")).not_to_contain_text("error")  # not a metric column
    expect(page.locator("#versions td[title='out of memory']")).to_have_text("failed")
    expect(page.locator("#serving")).to_have_text("Serving itemknn from version 2.")
    # Two versions have an NDCG@20; the active one's bar is marked.
    expect(page.locator("#ndcg-chart rect")).to_have_count(2)
    expect(page.locator("#ndcg-chart rect.active")).to_have_count(1)


def test_user_and_item_explorers(page, server):
    sign_in(page, server.read)
    page.click("nav a[href='#users']")
    page.fill("#users input", "x")
    page.click("#users button")
    history = page.locator("#history li")
    expect(history).to_have_count(2, timeout=WAIT_MS)
    expect(history.first).to_contain_text("Action 1")  # newest first, by title
    expect(page.locator("#profile .bar-row").first).to_contain_text("Action")
    recommendations = page.locator("#recommendations li")
    expect(recommendations).to_have_count(10)
    expect(recommendations.first.locator(".why")).to_contain_text("Because you liked")

    history.first.locator("a").click()  # an item of the history opens the item explorer
    expect(page).to_have_url(f"{server.url}/#items/a1")
    expect(page.locator("#similar-title")).to_have_text("Similar to Action 1")
    expect(page.locator("#similar li").first).to_contain_text("Action", timeout=WAIT_MS)

    page.fill("#items input", "no-such-item")
    page.click("#items button")
    expect(page.locator("#items .error")).to_contain_text("not found (404)", timeout=WAIT_MS)


def test_live_view_shows_posted_events(page, server):
    sign_in(page, server.read)
    page.click("nav a[href='#live']")
    expect(page.locator("#live-events tbody tr")).to_have_count(50, timeout=WAIT_MS)  # the newest stored events
    posted = httpx.post(f"{server.url}/v1/events", headers={"X-API-Key": server.write}, timeout=10,
                        json={"events": [{"user": "live-viewer", "item": "c3", "event": "click"}]})
    assert posted.status_code == 201, posted.text
    newest = page.locator("#live-events tbody tr").first
    expect(newest).to_contain_text("live-viewer", timeout=5_000)
    expect(newest).to_contain_text("Comedy 3")
    expect(newest).to_contain_text("click")


def test_a_wrong_key_is_refused_with_a_message(page):
    sign_in(page, "rk_not-a-key")
    expect(page.locator("#login-error")).to_contain_text("the API key was refused (401)", timeout=WAIT_MS)
    expect(page.locator("#login-error")).to_contain_text("unknown or revoked")
    expect(page.locator("#overview")).to_be_hidden()


def test_experiments_are_defined_and_analysed(page, server):
    sign_in(page, server.read)
    page.click("nav a[href='#experiments']")
    form = page.locator("#experiment-form")
    form.locator("[name=name]").fill("layout")
    form.locator("[name=surface]").fill("home")
    form.locator("button").click()
    expect(page.locator("#experiment-form-error")).to_contain_text("lacks the scope (403)", timeout=WAIT_MS)

    page.click("#change-key")
    sign_in(page, server.admin)
    page.click("nav a[href='#experiments']")
    form.locator("[name=name]").fill("layout")
    form.locator("[name=surface]").fill("home")
    form.locator("[name=variants]").fill("control=0.5\ntreatment=0.6")
    form.locator("button").click()
    expect(page.locator("#experiment-form-error")).to_contain_text("they sum to 1.1", timeout=WAIT_MS)
    form.locator("[name=variants]").fill("control=0.5\ntreatment=0.5,diversity=0.3")
    form.locator("button").click()
    expect(page).to_have_url(f"{server.url}/#experiments/layout", timeout=WAIT_MS)
    expect(page.locator("#experiment-list tr.active")).to_contain_text("running")
    expect(page.locator("#decision")).to_contain_text("Keep running")  # nothing shown yet

    # A broken split logged over three hours: 300 users saw control, 200 the treatment, which got more clicks.
    start = datetime.now(UTC) - timedelta(hours=3)
    shown, clicks = [], []
    for k in range(500):
        variant, at = ("control" if k < 300 else "treatment"), start + timedelta(seconds=20 * k)
        shown.append(Impression(f"layout-{k}", f"visitor{k}", at, "itemknn", ["a1"], [1.0], experiment="layout",
                                variant=variant, variant_propensity=0.5))
        if k % (3 if variant == "treatment" else 6) == 0:
            clicks.append((f"visitor{k}", int(at.timestamp()) + 5, f"layout-{k}"))
    with Store.open(server.store) as store:
        store.add_impressions(shown)
        store.add_events(pd.DataFrame(clicks, columns=["user", "timestamp", "request_id"]).assign(
            item="a1", event="click"))
    page.reload()
    expect(page.locator("#srm-warning")).to_contain_text("Sample ratio mismatch", timeout=WAIT_MS)
    expect(page.locator("#decision")).to_contain_text("Stop: sample ratio mismatch")
    rows = page.locator("#experiment-variants tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("control")
    expect(rows.nth(1)).to_contain_text("treatment")
    expect(rows.nth(1).locator("td").nth(2)).to_have_text("200")  # its exposures
    points = page.locator("#lift-chart polyline[data-variant=treatment]").get_attribute("points").split()
    assert len(points) >= 2  # the lift at each look
    expect(page.locator("#lift-chart polygon.band")).to_have_count(1)
