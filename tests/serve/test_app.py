"""The HTTP layer on a real (tiny, random) pipeline: routes, provenance, limits, OpenAI error objects, auth.
tests/serve/test_serve_e2e.py runs a trained tiny run behind a real uvicorn server."""

import json

import pytest

from ktune.prompt import provenance_line

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from ktune.serve.app import ServeSettings, create_app  # noqa: E402


@pytest.fixture
def client(tiny_qa):
    with TestClient(create_app(tiny_qa, ServeSettings(run="runs/tiny", max_batch_questions=4, max_messages=6,
                                                      max_body_bytes=10_000))) as c:
        yield c


def _error(r, status):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    return err


def test_ask_returns_query_knowledge_answer_and_the_run(client, tiny_qa):
    r = client.post("/v1/ask", json={"question": "急性中耳炎吃什么药？"})
    assert r.status_code == 200
    body = r.json()
    assert body["kb_version"] == tiny_qa.kb.version and body["run"] == "runs/tiny"
    assert body["question"] == "急性中耳炎吃什么药？"
    if body["refused"]:
        assert body["knowledge"] == {} and "相关知识" not in body["answer"]
    else:
        assert body["answer"].endswith(provenance_line(body["knowledge"]))
    assert body["usage"]["prompt_tokens"] > 0


def test_health_and_models_name_the_run_kb_and_queue(client, tiny_qa):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["run"] == "runs/tiny" and health["model"] == "tiny"
    assert health["kb_version"] == tiny_qa.kb.version and health["queue_depth"] == 0
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"]


def test_bad_questions_are_400_error_objects(client):
    assert "empty" in _error(client.post("/v1/ask", json={"question": "   "}), 400)["message"]
    long = _error(client.post("/v1/ask", json={"question": "问" * 2001}), 400)
    assert "2001 characters" in long["message"]
    raw = b'{"question": "\\ud800\xe7\x97\x9b"}'  # a lone surrogate, escaped as JSON allows
    err = _error(client.post("/v1/ask", content=raw, headers={"content-type": "application/json"}), 400)
    assert "surrogate" in err["message"]
    assert _error(client.post("/v1/ask", content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert _error(client.post("/v1/ask", json={}), 400)["param"] == "question"


def test_request_limits_are_clear_4xx(client):
    big = json.dumps({"question": "痛" * 20_000}).encode()
    assert _error(client.post("/v1/ask", content=big, headers={"content-type": "application/json"}), 413)["code"] == "body_too_large"
    chunks = iter([b'{"question": "', b"x" * 6000, b"x" * 6000, b'"}'])  # no Content-Length: counted while read
    assert _error(client.post("/v1/ask", content=chunks, headers={"content-type": "application/json"}), 413)
    many = _error(client.post("/v1/predict", json={"questions": ["感冒会传染吗？"] * 5}), 400)
    assert many["code"] == "too_many_questions"
    assert _error(client.get("/v1/kb/link/感冒", params={"k": -1}), 400)["param"] == "k"
    msgs = [{"role": "user", "content": "感冒会传染吗？"}] * 7
    assert "7 messages" in _error(client.post("/v1/chat/completions", json={"model": "tiny", "messages": msgs}), 400)["message"]


def test_predict_mixes_lookups_in_order(client):
    r = client.post("/v1/predict", json={"questions": ["急性中耳炎吃什么药？", "偏头痛看什么科？"], "with_answer": False})
    body = r.json()
    assert [b["question"] for b in body] == ["急性中耳炎吃什么药？", "偏头痛看什么科？"]
    assert all(b["answer"] is None for b in body)


def test_kb_routes(client):
    assert _error(client.get("/v1/kb/不存在", params={"attribute": "临床表现"}), 404)
    assert _error(client.get("/v1/kb/偏头痛", params={"attribute": "颜色"}), 400)
    ok = client.get("/v1/kb/偏头痛", params={"attribute": "就诊科室"})
    assert ok.json()["knowledge"] == {"偏头痛": {"就诊科室": ["神经内科"]}}
    whole = client.get("/v1/kb/偏头痛").json()["knowledge"]["偏头痛"]
    assert whole["别称"] == ["偏头疼"]
    links = client.get("/v1/kb/link/偏头疼").json()
    assert links[0]["entity"] == "偏头痛"


def test_chat_reads_text_parts_and_resolves_a_follow_up(client):
    messages = [
        {"role": "system", "content": "你是医生助手"},
        {"role": "user", "content": [{"type": "text", "text": "我5岁的儿子确诊急性中耳炎。"}]},
        {"role": "assistant", "content": "好的。"},
        {"role": "user", "content": [{"type": "text", "text": "应该用"}, {"type": "text", "text": "什么药？"}]},
    ]
    body = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages}).json()
    assert body["object"] == "chat.completion"
    assert body["ktune"]["question"] == "急性中耳炎，应该用什么药？"
    assert body["ktune"]["conversation"] == {"turn": 3, "context_from_turn": 1, "context": "急性中耳炎"}
    assert body["choices"][0]["message"]["content"] == body["ktune"]["answer"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    assert "image_url" in _error(client.post("/v1/chat/completions", json={"model": "t", "messages": image}), 400)["message"]
    assert _error(client.post("/v1/chat/completions", json={"model": "t", "messages": [{"role": "system", "content": "x"}]}), 400)


def test_docs_are_not_served_from_a_cdn_and_the_web_app_is_offline(client):
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/", "/static/common.js", "/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text, asset


def test_api_key_guards_v1_but_not_health(tiny_qa):
    with TestClient(create_app(tiny_qa, ServeSettings(api_key="s3cret"))) as c:
        assert c.get("/health").status_code == 200
        assert _error(c.get("/v1/models"), 401)["code"] == "invalid_api_key"
        assert _error(c.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_serve_refuses_a_public_address_without_an_api_key():
    from ktune.cli.main import make_parser
    from ktune.cli.serve import serve_settings
    from ktune.errors import ConfigError

    parser = make_parser()
    with pytest.raises(ConfigError, match="api-key"):
        serve_settings(parser.parse_args(["serve", "--host", "0.0.0.0", "--api-key", ""]))
    assert serve_settings(parser.parse_args(["serve", "--host", "0.0.0.0", "--api-key", "k"])).api_key == "k"
    assert serve_settings(parser.parse_args(["serve", "--host", "::1", "--api-key", ""])).api_key is None


def test_a_client_that_disconnects_cancels_its_queued_question(tiny_qa):
    import asyncio

    app = create_app(tiny_qa)  # no lifespan: the worker is not started, so the question stays queued
    worker = app.state.worker
    body = json.dumps({"question": "急性中耳炎吃什么药？"}, ensure_ascii=False).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/ask", "raw_path": b"/v1/ask", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():  # the client is gone once its request is in (uvicorn then answers at once)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def scenario():
        await app(scope, receive, send)
        queued = worker._queue.get_nowait()
        return queued

    job = asyncio.run(scenario())
    assert job.cancelled and job.question == "急性中耳炎吃什么药？"
    assert sent[0]["status"] == 499
    assert worker.served == 0


def test_serve_takes_the_pipeline_options_of_ask():
    from ktune.cli.ask import pipeline_config
    from ktune.cli.main import make_parser

    args = make_parser().parse_args(["serve", "--run", "runs/x", "--mode", "free", "--dtype", "fp32",
                                     "--num-beams", "2", "--max-chars", "300", "--batch-size", "8"])
    config = pipeline_config(args)
    assert (config.query_mode, config.dtype, config.num_beams, config.max_question_chars, config.batch_size) == (
        "free", "fp32", 2, 300, 8)


def test_ask_stream_sends_lookup_then_text_then_the_answer_record(client):
    with client.stream("POST", "/v1/ask", json={"question": "急性中耳炎吃什么药？", "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("event: "):] for line in r.iter_lines() if line.startswith("event: ")]
    # the lookup (query, knowledge) before any text; the answer or refusal text; the record with provenance
    assert events[0] == "lookup" and events[-1] == "done" and "delta" in events and "error" not in events
