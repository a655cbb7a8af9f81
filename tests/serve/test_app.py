"""The HTTP layer: routes, provenance in every response, clear 4xx errors. The QA object here is a
minimal stand-in with the pipeline's interface; tests/serve/test_serve_e2e.py runs a real tiny run."""

from dataclasses import dataclass

import pytest

from ktune.errors import InputError
from ktune.prompt import provenance_line

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from ktune.serve.app import create_app  # noqa: E402


@dataclass
class _Answer:
    question: str
    knowledge: dict
    kb_version: str

    def to_json(self):
        refused = not self.knowledge
        text = "知识库中没有相关条目。" if refused else "可用阿莫西林。\n" + provenance_line(self.knowledge)
        return {"question": self.question, "query": {"entity": "急性中耳炎", "attribute": "药物治疗"},
                "linked_entity": "急性中耳炎", "knowledge": self.knowledge, "answer": text,
                "refused": refused, "kb_version": self.kb_version}


class _QA:
    def __init__(self, kb):
        self.kb = kb
        self.run_dir = "runs/test"

    def ask_batch(self, questions, with_answer=True):
        out = []
        for q in questions:
            if not q.strip():
                raise InputError("empty question")
            k = self.kb.acquire_knowledge("急性中耳炎", "药物治疗") if "中耳炎" in q else {}
            out.append(_Answer(q, k, self.kb.version))
        return out


@pytest.fixture
def client(mini_kb):
    return TestClient(create_app(_QA(mini_kb)))


def test_ask_returns_answer_with_provenance_and_kb_version(client, mini_kb):
    r = client.post("/v1/ask", json={"question": "急性中耳炎吃什么药？"})
    assert r.status_code == 200
    body = r.json()
    assert body["knowledge"] == mini_kb.acquire_knowledge("急性中耳炎", "药物治疗")
    assert body["answer"].endswith(provenance_line(body["knowledge"]))
    assert body["kb_version"] == mini_kb.version


def test_empty_question_is_a_400_with_the_reason(client):
    r = client.post("/v1/ask", json={"question": "   "})
    assert r.status_code == 400 and "empty" in r.json()["detail"]


def test_openai_compatible_chat_completion_carries_ktune_provenance(client):
    r = client.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "中耳炎用药"}]})
    body = r.json()
    assert body["object"] == "chat.completion"
    assert "相关知识：" in body["choices"][0]["message"]["content"]
    assert body["ktune"]["linked_entity"] == "急性中耳炎"


def test_kb_lookup_404s_for_a_missing_entry_and_400s_for_an_unknown_attribute(client):
    assert client.get("/v1/kb/不存在", params={"attribute": "临床表现"}).status_code == 404
    assert client.get("/v1/kb/偏头痛", params={"attribute": "颜色"}).status_code == 400
    ok = client.get("/v1/kb/偏头痛", params={"attribute": "就诊科室"})
    assert ok.json()["knowledge"] == {"偏头痛": {"就诊科室": ["神经内科"]}}


def test_predict_batches_and_rejects_oversized_batches(client):
    r = client.post("/v1/predict", json={"questions": ["中耳炎", "偏头痛"]})
    assert [a["refused"] for a in r.json()] == [False, True]
    assert client.post("/v1/predict", json={"questions": ["q"] * 65}).status_code == 422
