"""The search page in headless Chromium (Debian's package, driven by Playwright): search a small
index, see ranked results and the per-query-token highlight; rerank pasted passages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from maxsim.api import Settings

CHROMIUM = os.environ.get("MAXSIM_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENSURE = Path(__file__).resolve().parents[2] / "scripts" / "ensure-chromium.sh"


def _chromium() -> str:
    if not os.path.exists(CHROMIUM) and ENSURE.exists():
        subprocess.run(
            ["sh", str(ENSURE)], check=False, capture_output=True, timeout=900
        )  # the test set-up's own install
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing and scripts/ensure-chromium.sh could not install it (needs root and apt)")
    return CHROMIUM


@pytest.fixture(scope="module")
def page_server(serve, tmp_path_factory):
    srv = serve(Settings(index_dir=str(tmp_path_factory.mktemp("page-idx"))))
    import httpx

    with srv.client() as c:
        assert c.post("/v1/indexes", json={"name": "wiki"}).status_code == 201
        docs = [
            {
                "text": "Berlin is the capital and largest city of Germany by population.",
                "id": "berlin",
                "metadata": {"lang": "en"},
            },
            {
                "text": "Mount Berlin is a glacier-covered volcano in Antarctica.",
                "id": "volcano",
                "metadata": {"lang": "en"},
            },
            {"text": "Paris est la capitale de la France.", "id": "paris", "metadata": {"lang": "fr"}},
            {"text": "Bananas are rich in potassium.", "id": "banana", "metadata": {"lang": "en"}},
        ]
        assert c.post("/v1/indexes/wiki/documents", json={"documents": docs}).status_code == 201
    del httpx
    return srv


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        yield b
        b.close()


def test_search_shows_results_and_token_highlight(browser, page_server):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_server.url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert "maxsim-e5-small-colbert" in page.inner_text("#model-name")
    page.select_option("#index-select", "wiki")
    page.fill("#search-query", "Wie viele Einwohner hat die Hauptstadt Deutschlands?")
    page.click("#search-button")
    page.wait_for_selector("#search-results li.result", timeout=60_000)
    results = page.locator("#search-results li.result")
    assert results.count() == 4
    first = results.nth(0)
    assert "berlin" in first.inner_text()
    assert "largest city of Germany" in first.inner_text().replace("\n", "")
    # the first result is selected: its matched tokens carry a heat colour
    hits = first.locator(".tok.hit")
    assert hits.count() >= 3
    assert hits.nth(0).evaluate("el => getComputedStyle(el).backgroundColor") not in ("", "rgba(0, 0, 0, 0)")
    # one query-token chip per non-special query token, coloured too
    chips = page.locator("#search-query-tokens .qtok")
    assert chips.count() >= 5
    # hovering another result moves the highlight there
    second = results.nth(1)
    second.hover()
    page.wait_for_function("document.querySelectorAll('#search-results li.result')[1].classList.contains('selected')")
    assert second.locator(".tok.hit").count() >= 1 and first.locator(".tok.hit").count() == 0
    # hovering a query token outlines the document token that gives its maximum
    first.click()
    chip = page.locator("#search-query-tokens .qtok:not(.expansion)").first
    chip.hover()
    focused = first.locator(".tok.focus")
    assert focused.count() == 1
    assert page.locator("#search-query-tokens .qtok.focus").count() == 1
    assert errors == []
    page.close()


def test_search_says_when_an_index_is_empty(browser, page_server):
    import httpx

    assert httpx.post(page_server.url + "/v1/indexes", json={"name": "blank"}).status_code == 201
    page = browser.new_page()
    page.goto(page_server.url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.select_option("#index-select", "blank")
    assert 'The index "blank" is empty' in page.inner_text("#search-status")
    page.fill("#search-query", "anything at all")
    page.click("#search-button")
    page.wait_for_function("document.getElementById('search-status').textContent.includes('is empty')")
    assert page.locator("#search-results li.result").count() == 0
    page.select_option("#index-select", "wiki")  # a non-empty index clears the note
    assert "empty" not in page.inner_text("#search-status")
    page.close()


def test_rerank_tab(browser, page_server):
    page = browser.new_page()
    page.goto(page_server.url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.click("#tab-rerank")
    assert page.is_visible("#panel-rerank") and not page.is_visible("#panel-search")
    page.fill("#rerank-query", "What is the population of Berlin?")
    page.fill(
        "#rerank-docs", "Bananas are yellow.\n\nBerlin has 3.85 million inhabitants.\n\nIrving Berlin wrote songs."
    )
    page.fill("#rerank-top", "2")
    page.click("#rerank-button")
    page.wait_for_selector("#rerank-results li.result", timeout=60_000)
    results = page.locator("#rerank-results li.result")
    assert results.count() == 2
    assert "3.85 million inhabitants" in results.nth(0).inner_text()
    assert results.nth(0).locator(".tok.hit").count() >= 2
    assert "2 of 3 passage(s)" in page.inner_text("#rerank-status")
    page.close()


def test_page_reports_auth_errors(browser, serve):
    srv = serve(Settings(api_keys=frozenset({"page-key-0123456789"})))
    page = browser.new_page()
    page.goto(srv.url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert "API key" in page.inner_text("#search-status")
    page.fill("#api-key", "page-key-0123456789")
    page.dispatch_event("#api-key", "change")
    page.wait_for_function(
        "document.querySelectorAll('#index-select option').length === 0 && "
        "document.getElementById('search-status').textContent.includes('No index')"
    )
    page.close()
    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)
