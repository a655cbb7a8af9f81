"""`ktune serve --workers 2` for real, over one KB that is re-imported while 64 clients ask: over a read-only
SQLite file and over PostgreSQL (skipped without KTUNE_TEST_PG_URL; CI sets it). Two processes, each with
its own model and inference worker, serve one loopback port; the test process re-imports the KB (mode
replace: one transaction rewriting every row) with one entity's facts changed and one entity added.

Asserted: 0 errors; every answer carries the old or the new KB version and exactly that version's knowledge
(no request sees a half-finished import or a mix of two); every request sent after the import committed is
answered from the new version with the new facts. Ordering comes from the test's own events (a client
checks whether the import has returned before it sends), never from timings."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.kb.test_postgres_store import pg_url, server_url  # noqa: F401 -- fixtures
from tests.serve.conftest import start_server, trained_questions

CLIENTS = 64
NEW_ENTITY = {"中心词": "测试新增病", "就诊科室": ["测试科"], "常见症状": ["测试症状"]}
READY = "worker process"


@pytest.fixture(params=["sqlite", "postgres"])
def kb_target(request, tmp_path):
    """A KB filled from the tiny run's source (tests/fixtures/data_kb.jsonl): an SQLite file or a PostgreSQL schema."""
    from ktune.kb import KnowledgeBase

    where = str(tmp_path / "kb.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with KnowledgeBase.open(where, create=True) as kb:
        kb.import_file(FIXTURES / "data_kb.jsonl")
    return where


def _wait_for_workers(proc, lines, n):
    """Until `n` worker processes have logged that they are ready (each loaded its own model)."""
    ready = threading.Event()

    def watch():
        while proc.poll() is None and not ready.is_set():
            if sum(READY in line and "ready" in line for line in list(lines)) >= n:
                ready.set()
            else:
                ready.wait(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t.join(180)
    assert ready.is_set(), "".join(lines)


def _ask(base, question, with_answer):
    body = {"question": question, "with_answer": with_answer, "max_answer_tokens": 8}
    r = httpx.post(base + "/v1/ask", json=body, timeout=300)
    return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)


def _changed_source(tmp_path, entity, predicates):
    """data_kb.jsonl with `entity`'s values for `predicates` replaced, plus NEW_ENTITY; and the new values."""
    rows = [json.loads(line) for line in (FIXTURES / "data_kb.jsonl").read_text("utf-8").splitlines() if line.strip()]
    new_values = {p: [f"重新导入的{p}"] for p in predicates}
    for row in rows:
        if row["中心词"] == entity:
            row.update(new_values)
    rows.append(NEW_ENTITY)
    path = tmp_path / "reimport.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path, {entity: new_values}


def test_two_workers_serve_64_clients_through_a_kb_reimport(trained, kb_target, tmp_path):
    from ktune.kb import KnowledgeBase
    from ktune.kb.schema import Schema

    run, _, data = trained
    proc, base, lines = start_server(run, kb_target, "--workers", "2")
    try:
        _wait_for_workers(proc, lines, 2)
        questions = trained_questions(data, 6, 2)
        before = {q: _ask(base, q, False) for q in questions}
        assert all(code == 200 for code, _ in before.values()), before
        old_version = before[questions[0]][1]["kb_version"]
        aliases = set(Schema.load().alias_predicates)
        # a question the tiny model looks up (its query does not depend on the values we change)
        tracked = next((q for q, (_, b) in before.items()
                        if not b["refused"] and not aliases.intersection(b["knowledge"][b["linked_entity"]])), None)
        assert tracked, f"the tiny run looked none of these up: {before}"
        entity = before[tracked][1]["linked_entity"]
        old_knowledge = before[tracked][1]["knowledge"]
        source, new_knowledge = _changed_source(tmp_path, entity, list(old_knowledge[entity]))

        started, imported = threading.Event(), threading.Event()
        results, lock = [], threading.Lock()

        def client(i):
            post_import = 0
            n = 0
            while not post_import:
                after = imported.is_set()  # read before sending: the import had committed
                q = questions[(i + n) % len(questions)]
                code, body = _ask(base, q, with_answer=(i + n) % 4 == 0)
                with lock:
                    results.append((after, q, code, body))
                    if len(results) >= CLIENTS // 4:  # serving is under way: now the import
                        started.set()
                post_import += after
                n += 1

        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client, i) for i in range(CLIENTS)]
            assert started.wait(300), "the clients got no answers"
            with KnowledgeBase.open(kb_target) as writer:  # `ktune kb import --mode replace` while serving
                new_version = writer.import_file(source, mode="replace").version_after
            imported.set()
            for f in futures:
                f.result()

        assert new_version != old_version
        errors = [(code, body) for _, _, code, body in results if code != 200]
        assert errors == []
        knowledge_of = {old_version: old_knowledge, new_version: new_knowledge}
        for after, q, _, body in results:
            assert body["kb_version"] in knowledge_of, body
            if after:
                assert body["kb_version"] == new_version, (q, body)
            if q == tracked:  # exactly the knowledge of the version it says it read
                assert body["knowledge"] == knowledge_of[body["kb_version"]], body
        assert sum(after for after, *_ in results) == CLIENTS

        entry = httpx.get(base + f"/v1/kb/{NEW_ENTITY['中心词']}", timeout=60).json()
        assert entry["kb_version"] == new_version
        assert entry["knowledge"] == {NEW_ENTITY["中心词"]: {k: v for k, v in NEW_ENTITY.items() if k != "中心词"}}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_worker_that_cannot_start_stops_the_server_with_an_error(trained, tmp_path):
    import subprocess
    import sys

    _, kb_path, _ = trained
    missing = tmp_path / "no-run"
    out = subprocess.run(
        [sys.executable, "-m", "ktune", "serve", "--run", str(missing), "--kb", str(kb_path), "--port", "0",
         "--workers", "2", "--threads", "1"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "failed to start" in out.stderr and "could not start" in out.stderr
