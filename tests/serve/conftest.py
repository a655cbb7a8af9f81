"""Serve fixtures: the pipeline tests' tiny model (random, on the mini KB) and a tiny run knowledge-tuned on a
dataset built from a small KB (it learns to query the KB, so answers are generated, not only refused)."""

import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.pipeline import conftest as pipeline_fixtures

# two systems' answers to two questions, as `ktune eval h2-export` reads them (the H2 rating page's tests)
H2_ROWS = {
    "tuned": [{"id": "s-1", "question": "急性中耳炎吃什么药？", "answer": "阿莫西林。\n相关知识：{}", "split": "test_seen"},
              {"id": "s-2", "question": "偏头痛看什么科？", "answer": "神经内科。", "split": "test_seen"}],
    "plain": [{"id": "s-1", "question": "急性中耳炎吃什么药？", "answer": "多喝热水。", "split": "test_seen"},
              {"id": "s-2", "question": "偏头痛看什么科？", "answer": "骨科。", "split": "test_seen"}],
}

# the pipeline tests' fixtures, shared: one torch thread, the tiny model and its tokenizer, the stub server
_one_torch_thread = pipeline_fixtures._one_torch_thread
tiny_dir = pipeline_fixtures.tiny_dir
tiny_lm = pipeline_fixtures.tiny_lm
fresh_run = pipeline_fixtures.fresh_run  # an untrained run: enough for a remote backend (its prompt format)
stub = pipeline_fixtures.stub  # a completions server playing that run (tests/chat_stub.py)


@pytest.fixture
def tiny_qa(tiny_lm, mini_kb):
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig

    model, tok = tiny_lm
    return KnowledgeTunedQA(model, tok, mini_kb, config=PipelineConfig(max_answer_tokens=24, max_query_tokens=24))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(run dir, KB path, data dir): a tiny model trained 200 steps on a dataset from tests/fixtures/data_kb.jsonl."""
    from ktune.data import DataConfig, build_dataset
    from ktune.kb import KnowledgeBase
    from ktune.train.tiny import build_tiny_run

    root = tmp_path_factory.mktemp("serve")
    kb_path = root / "kb.sqlite"
    with KnowledgeBase.open(kb_path, create=True) as kb:
        kb.import_file(FIXTURES / "data_kb.jsonl")
        build_dataset(kb, root / "data", DataConfig.scaled(200, fewshot_sizes=(50,), progress=False))
    build_tiny_run(root / "data", root / "run", steps=200, answer_fraction=0.2)
    return root / "run", kb_path, root / "data"


@pytest.fixture(scope="session")
def trained_qa(trained):
    from ktune.pipeline import KnowledgeTunedQA

    run, kb_path, _ = trained
    return KnowledgeTunedQA.from_pretrained(run, kb=kb_path, max_answer_tokens=48)


def trained_questions(data_dir, n_seen=6, n_refused=2) -> list[str]:
    """Questions the tiny run answers (test_seen) and ones it should refuse (test_no_knowledge)."""
    import json

    def first(name, n):
        lines = (data_dir / f"{name}.jsonl").read_text("utf-8").splitlines()
        return [json.loads(line)["question"] for line in lines[:n]]

    return first("test_seen", n_seen) + first("test_no_knowledge", n_refused)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run, kb_path, *extra, env=None):
    """(process, base URL, output lines): `ktune serve` on a free loopback port, once /health answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ktune", "serve", "--run", str(run), "--kb", str(kb_path), "--port", str(port),
         "--threads", "1", *extra],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(480):
        if proc.poll() is not None:
            pytest.fail("server exited early:\n" + "".join(lines))
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base, lines
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    pytest.fail("server did not start in 120 s:\n" + "".join(lines))
