"""The web app in a real browser: Debian's chromium (scripts/chromium.sh, run by `make test`) driven by
Playwright against `ktune serve` on a trained tiny run. Screenshots go to tmp/artifacts/browser/.

Skipped only outside CI when chromium or Playwright is missing; in CI (CI=true) that is a failure."""

import os
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import H2_ROWS, start_server, trained_questions

CHROMIUM = os.environ.get("KTUNE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "tmp" / "artifacts" / "browser"
KEY = "browser-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _need(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: `make test` runs scripts/chromium.sh and installs the dev extra")
    pytest.skip(f"{what} is missing (run scripts/chromium.sh, pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _need(CHROMIUM)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("the playwright Python package")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    from ktune.eval.h2_experts import export_items

    run, kb_path, data = trained
    h2 = tmp_path_factory.mktemp("h2")
    export_items(H2_ROWS, h2, seed=1)
    proc, base, lines = start_server(run, kb_path, "--h2", str(h2), env={"KTUNE_API_KEY": KEY})
    try:
        yield base, kb_path, data
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def page(browser, server, request):
    base, _, _ = server
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    p = context.new_page()
    errors = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    outside = []
    p.on("request", lambda req: outside.append(req.url) if not req.url.startswith(base) else None)
    p.goto(base + "/")
    p.get_by_test_id("api-key").fill(KEY)  # the server asks for a key: the page shows the key box
    p.click("#save-key")
    yield p
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, errors
    assert not outside, f"the page loaded something from elsewhere: {outside}"


def _api(base, question):
    r = httpx.post(base + "/v1/ask", json={"question": question}, headers=AUTH, timeout=120)
    r.raise_for_status()
    return r.json()


def _ask(page, question):
    page.get_by_test_id("question").fill(question)
    page.get_by_test_id("ask").click()
    page.wait_for_selector("[data-testid=status][data-done='1']", timeout=120_000)


def test_ask_streams_the_answer_and_shows_query_knowledge_and_citations(page, server):
    base, _, data = server
    expected = next(a for a in (_api(base, q) for q in trained_questions(data)) if not a["refused"])
    _ask(page, expected["question"])
    body, provenance = expected["answer"].split("\n相关知识：")
    assert page.get_by_test_id("answer").inner_text() == body
    assert page.get_by_test_id("provenance-line").inner_text() == "相关知识：" + provenance
    assert page.get_by_test_id("q-linked").inner_text() == expected["linked_entity"]
    assert page.get_by_test_id("q-attribute").inner_text() == expected["query"]["attribute"]
    assert page.get_by_test_id("q-method").inner_text().startswith(expected["link_method"])
    assert page.get_by_test_id("q-kb").inner_text() == expected["kb_version"]
    rows = page.locator("[data-testid=knowledge] tbody tr")
    table = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        values = cells.nth(2).locator(".value")
        table[(cells.nth(0).inner_text(), cells.nth(1).inner_text())] = [values.nth(j).inner_text() for j in range(values.count())]
    assert table == {(e, p): v for e, preds in expected["knowledge"].items() for p, v in preds.items()}
    cited = set(page.locator("[data-testid=knowledge] .value.cited").all_inner_texts())
    assert cited == {v for vs in table.values() for v in vs if v in body}
    assert not page.get_by_test_id("refusal").is_visible()


def test_a_refusal_says_what_was_looked_up(page, server):
    base, _, data = server
    questions = trained_questions(data, 0, 6) + ["完全不存在的疾病ZZZ应该吃什么药？", "今天天气怎么样？"]
    refused = next((a for a in (_api(base, q) for q in questions) if a["refused"]), None)
    assert refused is not None, "the tiny run refused none of the no-knowledge questions"
    _ask(page, refused["question"])
    box = page.get_by_test_id("refusal")
    assert box.is_visible()
    text = box.inner_text()
    assert "拒答" in text and (refused["query"]["entity"] or "无") in text
    assert page.get_by_test_id("answer").inner_text() == refused["answer"]
    assert not page.get_by_test_id("knowledge").is_visible()


def test_kb_browser_shows_link_candidates_and_every_attribute(page, server):
    from ktune.kb import KnowledgeBase

    _, kb_path, _ = server
    with KnowledgeBase.open(kb_path) as kb:
        entity = next(e for e in kb.entities() if len(kb.get(e)) >= 3)
        entry = kb.get(entity)
    page.get_by_test_id("tab-kb").click()
    page.get_by_test_id("kb-name").fill(entity)
    page.get_by_test_id("kb-search").click()
    page.wait_for_selector(f"[data-testid=kb-links] button[data-entity='{entity}']")
    page.wait_for_function("document.querySelectorAll('[data-testid=kb-entry] tbody tr').length > 0")
    rows = page.locator("[data-testid=kb-entry] tbody tr")
    shown = {rows.nth(i).locator("td").nth(0).inner_text(): rows.nth(i).locator(".value").all_inner_texts()
             for i in range(rows.count())}
    assert shown == {pred: list(values) for pred, values in entry.items()}


def test_an_expert_rates_blinded_answers_side_by_side(page, server):
    base, _, _ = server
    page.goto(base + "/h2")
    page.get_by_test_id("rater").fill("专家甲")
    page.get_by_test_id("rater-start").click()
    page.wait_for_selector("[data-testid=item-1] .h2-answer")
    codes = page.locator("[data-testid=item-1] .h2-answer").evaluate_all("els => els.map(e => e.dataset.code)")
    assert len(codes) == 2
    for i, code in enumerate(codes):
        page.get_by_test_id(f"{code}-helpfulness-{5 - i}").check()
        page.get_by_test_id(f"{code}-harmlessness-4").check()
    page.get_by_test_id(f"{codes[0]}-comment").fill("引用了知识库")
    page.get_by_test_id("save-1").click()
    page.wait_for_function("document.querySelector('[data-testid=status]').textContent.includes('已保存')")
    saved = httpx.get(base + "/v1/h2/ratings", params={"rater": "专家甲"}, headers=AUTH, timeout=30).json()
    assert saved == {codes[0]: {"helpfulness": 5, "harmlessness": 4, "comment": "引用了知识库"},
                     codes[1]: {"helpfulness": 4, "harmlessness": 4, "comment": ""}}
    assert "tuned" not in page.content() and "plain" not in page.content()  # the systems stay blinded
