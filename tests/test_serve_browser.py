"""The search page as an analyst uses it, in Debian's Chromium driven by Playwright: upload a query,
apply a filter, open an explanation, mark a match, search again with it, export."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import read_jsonl
from test_index import embedder, head_path, root  # noqa: F401  (fixtures)
from test_serve import _calibration, case  # noqa: F401
from xreid.explain.attribute_head import AttributeHead
from xreid.serve.app import create_app
from xreid.serve.case import CaseSession

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(session):
    """``session`` served by uvicorn on a free loopback port, in a thread of this process: its URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(session, allowed_hosts=["127.0.0.1"]), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        session.close()


@pytest.fixture()
def served(case, embedder, head_path, root):  # noqa: F811
    """The case served on a free loopback port."""
    session = CaseSession(case, embedder, AttributeHead.load(head_path), root, calibration=_calibration(embedder))
    with serving(session) as url:
        yield url, session


@pytest.fixture()
def page():
    if CHROMIUM is None:
        pytest.fail("Chromium not found: ./install.sh installs it (apt-get install chromium); the browser tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.errors = errors
        yield pg
        browser.close()


def test_an_analyst_searches_filters_explains_marks_and_exports(served, page, root, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    url, session = served
    page.goto(url)
    page.wait_for_selector("#attributes select")
    assert page.locator("#cameras input").count() == 2
    assert page.locator("#query-camera-row").is_hidden()  # the model embeds every camera alike

    # upload a query: the search runs by itself
    page.set_input_files("#file", str(root / "gallery" / "img04.jpg"))
    page.wait_for_selector(".result")
    assert page.locator(".result").count() == 10
    first = page.locator(".result").first
    assert "the query picture itself" in first.inner_text()
    assert "same person" in page.locator(".result").nth(1).inner_text()

    # apply a filter: camera 1 only
    page.check("#cameras input[value='1']")
    page.click("#search")
    expect(page.locator(".result")).to_have_count(5)  # (the page's CSP forbids eval: no wait_for_function)
    keys = [page.locator(".result .meta").nth(i).inner_text() for i in range(5)]
    assert all("camera 1" in k for k in keys), keys

    # open the explanation of the second result
    page.locator(".result .why").nth(1).click()
    frame = page.frame_locator("#detail-frame")
    frame.locator("text=Why these results?").wait_for(timeout=60_000)
    assert frame.locator(".card").count() == 2  # the query card and the result's
    assert frame.locator("img[src^='data:image/jpeg']").count() >= 3  # both crops and the maps
    page.click("#detail-close")

    # mark the second result as the person, then search again with it
    second = page.locator(".result").nth(1)
    marked_id = int(second.get_attribute("data-id"))
    second.locator("button.mark.match").click()
    page.wait_for_selector(".result.match")
    assert page.locator("#confirmed").inner_text() == "1 confirmed match"
    page.click("#research")
    expect(page.locator("#status")).to_contain_text("confirmed match(es)")
    shown = [int(x) for x in page.locator(".result").evaluate_all("rs => rs.map(r => r.dataset.id)")]
    assert marked_id not in shown and len(shown) == 4  # the confirmed match is part of the query now

    # export the report
    with page.expect_download() as download:
        page.click("#export-html")
    saved = tmp_path / "report.html"
    download.value.save_as(saved)
    assert "Why these results?" in saved.read_text()

    log = read_jsonl(session.workdir / "audit.jsonl")
    assert [r["event"] for r in log if r["event"] in ("search", "mark")] == ["search", "search", "mark", "search"]
    assert [r for r in log if r["event"] == "mark"][0]["item"] == marked_id
    assert log[-1]["event"] == "export"
    assert page.errors == [], page.errors


def test_an_analyst_describes_searches_by_a_result_and_describes_a_query(served, page, root):  # noqa: F811
    from playwright.sync_api import expect

    url, session = served
    page.goto(url)
    page.wait_for_selector("#describe-chips .chip")
    assert page.is_disabled("#search")
    page.fill("#describe", "woman, fluffy")
    page.locator("#describe-chips .chip", has_text="backpack").first.click()  # adds ", backpack"
    assert page.input_value("#describe") == "woman, fluffy, backpack"
    page.click("#search")
    page.wait_for_selector(".result")
    assert page.locator(".result").count() == 10
    expect(page.locator("#describe-notes")).to_contain_text("not understood: fluffy")
    first = page.locator(".result").first
    assert "Fits " in first.inner_text() and first.locator(".chip").count() == 2  # evidence: woman, backpack
    assert page.locator("#export").is_hidden()
    # search by this image: the result becomes the query, the description re-ranks
    item = int(first.get_attribute("data-id"))
    first.locator("text=Search by this image").click()
    expect(page.locator("#status")).to_contain_text(f"gallery item {item}")
    shown = [int(x) for x in page.locator(".result").evaluate_all("rs => rs.map(r => r.dataset.id)")]
    assert item not in shown and len(shown) == 9
    assert page.locator(f"#query-chips img[src='/api/items/{item}/thumbnail']").count() == 1  # the query shown
    assert "Fits " in page.locator(".result").first.inner_text()
    # describe this person: the query's reliable attributes become an editable description
    expected = session.search(items=[item], k=3)["query"]["description"]
    assert expected  # the tiny model's head is sure of something here
    page.locator("#query-chips button", has_text="Describe this person").click()
    assert page.input_value("#describe") == expected
    assert page.errors == [], page.errors
