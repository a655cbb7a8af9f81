"""`ktune serve --backend openai`: the pipeline's stages 1 and 3 on a completions server (the stub of
tests/chat_stub.py playing a run), KB look-up, provenance and refusals here. /health and /v1/models name the
backend and the generation mode; the worker answers (streamed too) without a local model or tokenizer."""

import json

import pytest

from ktune.prompt import provenance_line
from tests.chat_stub import CompletionsStub
from tests.serve.conftest import start_server

httpx = pytest.importorskip("httpx")
pytest.importorskip("openai")
REMOTE = {"backend": "openai", "model": "ktune-run", "query_constraint": "grammar", "query_mode": "fallback",
          "answer_streaming": False}


def test_ktune_serve_with_the_openai_backend_answers_with_provenance_and_reports_it(fresh_run, mini_kb, stub):
    proc, base, lines = start_server(fresh_run, mini_kb.store.path, "--backend", "openai", "--base-url",
                                     stub + "/v1", "--model", "ktune-run", "--backend-api-key", "remote-key",
                                     env={"KTUNE_API_KEY": "client-key"})
    auth = {"Authorization": "Bearer client-key"}
    try:
        health = httpx.get(base + "/health", timeout=30).json()
        models = httpx.get(base + "/v1/models", headers=auth, timeout=30).json()
        asked = httpx.post(base + "/v1/ask", json={"question": "急性中耳炎吃啥药"}, headers=auth, timeout=60)
        refused = httpx.post(base + "/v1/ask", json={"question": "耳朵发炎吃啥药"}, headers=auth, timeout=60).json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert health["generation"] == REMOTE and health["status"] == "ok"
    assert models["data"][0]["ktune"]["generation"] == REMOTE
    body = asked.json()
    assert asked.status_code == 200, body
    # the server's query came out of the grammar; the knowledge is the KB's entry, cited under the answer
    assert body["linked_entity"] == "急性中耳炎" and body["link_method"].startswith("constrained:")
    assert body["knowledge"] == mini_kb.acquire_knowledge("急性中耳炎", "药物治疗") != {}
    # the server's body, then what it does not write, listed from the knowledge: the rest of 药物治疗, 相关药物
    listed = "根据知识库，急性中耳炎的药物治疗：头孢菌素、镇痛药。根据知识库，急性中耳炎的相关药物：阿莫西林胶囊。"
    assert body["answer"] == CompletionsStub.body + listed + "\n" + provenance_line(body["knowledge"])
    assert body["generation"]["backend"] == "openai" and body["kb_version"] == mini_kb.version
    assert refused["refused"] and refused["knowledge"] == {} and "相关知识" not in refused["answer"]
    # every generation went to the completions server, with its own key (not the key this server's clients send)
    assert CompletionsStub.seen and {r["path"] for r in CompletionsStub.seen} == {"/v1/completions"}
    assert {r["auth"] for r in CompletionsStub.seen} == {"Bearer remote-key"}


@pytest.fixture
def remote_client(fresh_run, mini_kb, stub):
    from fastapi.testclient import TestClient

    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig
    from ktune.pipeline.backend import OpenAIBackend
    from ktune.serve.app import ServeSettings, create_app

    qa = KnowledgeTunedQA.from_pretrained(fresh_run, kb=mini_kb, config=PipelineConfig(mention_fallback=False),
                                          backend=OpenAIBackend(stub + "/v1", "ktune-run", retries=0))
    with TestClient(create_app(qa, ServeSettings(run=str(fresh_run)))) as client:
        yield client


def _events(response) -> list[tuple[str, dict]]:
    out, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[len("data: "):])))
    return out


def test_a_streamed_request_gets_the_remote_answer_whole_after_its_lookup(remote_client):
    with remote_client.stream("POST", "/v1/ask", json={"question": "急性中耳炎用什么药？", "stream": True}) as r:
        events = _events(r)
    names = [n for n, _ in events]
    assert names[0] == "lookup" and names[-1] == "done" and "error" not in names
    done = events[-1][1]
    # one delta: the checked answer, provenance included (a local model's text would come clause by clause)
    assert [d["text"] for n, d in events if n == "delta"] == [done["answer"]]
    assert done["answer"].startswith(CompletionsStub.body)
    assert done["knowledge"] == events[0][1]["knowledge"] != {}
    assert done["usage"]["completion_tokens"] == 0  # the server counts its tokens; nothing local to count with
