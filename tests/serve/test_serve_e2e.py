"""`ktune serve` for real: a tiny model knowledge-tuned in the test, a uvicorn server in a subprocess,
HTTP requests over loopback. Every answer carries knowledge that is exactly the KB entry it names."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import FIXTURES

httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from ktune.data import DataConfig, build_dataset
    from ktune.kb import KnowledgeBase
    from ktune.train.tiny import build_tiny_run

    root = tmp_path_factory.mktemp("serve")
    kb_path = root / "kb.sqlite"
    with KnowledgeBase.open(kb_path, create=True) as kb:
        kb.import_file(FIXTURES / "data_kb.jsonl")
        build_dataset(kb, root / "data", DataConfig.scaled(200, fewshot_sizes=(50,), progress=False))
    build_tiny_run(root / "data", root / "run", steps=200, answer_fraction=0.2)
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ktune", "serve", "--run", str(root / "run"), "--kb", str(kb_path), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"server exited early:\n{proc.stdout.read()}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("server did not start in 120 s")
        yield base, kb_path, root
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_served_answers_cite_exactly_the_kb_entry_they_name(served):
    from ktune.kb import KnowledgeBase

    base, kb_path, root = served
    questions = [json.loads(line)["question"] for line in (root / "data" / "test_seen.jsonl").read_text("utf-8").splitlines()[:3]]
    body = httpx.post(base + "/v1/predict", json={"questions": questions}, timeout=120).json()
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
    base, _, _ = served
    r = httpx.post(base + "/v1/ask", json={"question": "完全不存在的疾病ZZZ应该吃什么药？"}, timeout=60).json()
    if not r["refused"]:  # a tiny model may map it onto some KB key; then the cited entry must be real
        assert r["knowledge"] and r["linked_entity"] in r["knowledge"]
    else:
        assert r["knowledge"] == {} and "相关知识" not in (r["answer"] or "")


def test_server_rejects_an_empty_question_with_400(served):
    base, _, _ = served
    r = httpx.post(base + "/v1/ask", json={"question": "  "}, timeout=30)
    assert r.status_code == 400
