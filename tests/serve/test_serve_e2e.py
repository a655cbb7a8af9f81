"""`ktune serve` for real: a tiny run knowledge-tuned in the test, a uvicorn server in a subprocess, HTTP over
loopback, the official `openai` client. Every answer carries knowledge that is exactly the KB entry it names,
concurrent clients get what they would get alone, and SIGTERM ends the server promptly."""

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.serve.conftest import start_server, trained_questions

httpx = pytest.importorskip("httpx")
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(trained):
    run, kb_path, data = trained
    proc, base, lines = start_server(run, kb_path, env={"KTUNE_API_KEY": KEY})
    try:
        yield base, kb_path, data, lines
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_served_answers_cite_exactly_the_kb_entry_they_name(served):
    from ktune.kb import KnowledgeBase

    base, kb_path, data, _ = served
    questions = trained_questions(data, 3, 0)
    body = httpx.post(base + "/v1/predict", json={"questions": questions}, headers=AUTH, timeout=120).json()
    assert len(body) == 3
    assert any(not item["refused"] for item in body), body  # the tiny model learned to query the KB
    with KnowledgeBase.open(kb_path) as kb:
        for item in body:
            assert item["kb_version"] == kb.version
            if item["refused"]:
                assert item["knowledge"] == {}
                continue
            entity, attribute = item["linked_entity"], item["query"]["attribute"]
            assert item["knowledge"] == kb.acquire_knowledge(entity, attribute) != {}
            assert item["answer"].endswith("相关知识：" + json.dumps(item["knowledge"], ensure_ascii=False, separators=(",", ":")))


def test_served_question_about_a_missing_entity_is_refused_with_no_knowledge(served):
    base, _, _, _ = served
    r = httpx.post(base + "/v1/ask", json={"question": "完全不存在的疾病ZZZ应该吃什么药？"}, headers=AUTH, timeout=60).json()
    if not r["refused"]:  # a tiny model may map it onto some KB key; then the cited entry must be real
        assert r["knowledge"] and r["linked_entity"] in r["knowledge"]
    else:
        assert r["knowledge"] == {} and "相关知识" not in (r["answer"] or "")


def test_server_requires_the_key_and_rejects_an_empty_question_with_400(served):
    base, _, _, _ = served
    assert httpx.post(base + "/v1/ask", json={"question": "感冒"}, timeout=30).status_code == 401
    r = httpx.post(base + "/v1/ask", json={"question": "  "}, headers=AUTH, timeout=30)
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]


def test_concurrent_clients_get_the_sequential_answers_and_health_stays_live(served):
    base, _, data, _ = served
    requests = [(q, w) for q in trained_questions(data) for w in (True, False)]

    def ask(item):
        q, with_answer = item
        r = httpx.post(base + "/v1/ask", json={"question": q, "with_answer": with_answer}, headers=AUTH, timeout=300)
        r.raise_for_status()
        body = r.json()
        return body, {k: body[k] for k in ("query", "linked_entity", "knowledge", "answer", "refused")}

    sequential = [ask(item)[1] for item in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(ask, item) for item in requests]
        health = httpx.get(base + "/health", timeout=30).json()  # answered while the batch is queued or running
        unfinished = sum(not f.done() for f in futures)
        concurrent = [f.result() for f in futures]
    assert [c[1] for c in concurrent] == sequential
    assert max(c[0]["usage"]["prompt_tokens"] for c in concurrent) > 0
    assert health["status"] == "ok" and "queue_depth" in health and health["run"].endswith("run")
    assert unfinished > 0  # /health did not wait for the model


def test_openai_client_non_stream_and_stream_agree(served):
    openai = pytest.importorskip("openai")
    base, _, data, _ = served
    client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=120)
    models = client.models.list()
    assert [m.id for m in models.data] == ["run"]
    question = trained_questions(data, 1, 0)[0]
    messages = [{"role": "user", "content": question}]
    done = client.chat.completions.create(model="run", messages=messages)
    text = done.choices[0].message.content
    assert text and done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    ktune = done.model_extra["ktune"]
    assert ktune["answer"] == text and ktune["kb_version"]

    chunks = list(client.chat.completions.create(model="run", messages=messages, stream=True,
                                                  stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    last = [c for c in chunks if c.choices][-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["ktune"]["knowledge"] == ktune["knowledge"]
    assert chunks[-1].usage.total_tokens == done.usage.total_tokens

    capped = client.chat.completions.create(model="run", messages=messages, max_tokens=1)
    assert capped.usage.completion_tokens <= 1

    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="run", messages=[{"role": "user", "content": " "}])
    assert "empty" in str(err.value)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()


def test_access_log_has_one_json_line_per_request(served):
    base, _, _, lines = served
    httpx.get(base + "/health", timeout=30)
    records = [json.loads(line.split(": ", 1)[1]) for line in list(lines) if "ktune.serve.access" in line]
    assert any(r["path"] == "/health" and r["status"] == 200 and "ms" in r for r in records)
    assert any(r["path"] == "/v1/ask" and r["status"] == 401 for r in records)


def test_sigterm_fails_queued_requests_and_exits(trained):
    run, kb_path, data = trained
    proc, base, lines = start_server(run, kb_path, "--batch-size", "1", "--shutdown-grace", "1")
    questions = trained_questions(data) * 3

    def ask(q):
        try:
            return httpx.post(base + "/v1/ask", json={"question": q}, timeout=120).status_code
        except httpx.HTTPError:
            return None  # the connection closed with the server

    with ThreadPoolExecutor(len(questions)) as pool:
        futures = [pool.submit(ask, q) for q in questions]
        while httpx.get(base + "/health", timeout=30).json()["queue_depth"] == 0 and not all(f.done() for f in futures):
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        codes = [f.result() for f in futures]
    # uvicorn re-raises the signal once it has shut down cleanly
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM), "".join(lines)
    assert any("Application shutdown complete" in line for line in lines)
    assert 503 in codes or None in codes  # queued work was not run to completion
