"""An import killed with SIGKILL in the middle of its transaction leaves the KB exactly as it was."""

import json
import os
import signal
import subprocess
import sys
import time

from ktune.kb import KnowledgeBase
from tests.conftest import FIXTURES
from tests.kb.test_cli_kb import KB_ONLY


def _big_file(path, entities=20_000, per_entity=15):
    """entities x per_entity triples (300,000 by default) as cMeKG-style records."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(entities):
            rec = {"中心词": f"合成病{i}", "常见症状": [f"症状{i}_{j}" for j in range(per_entity)]}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _wait_for_line(proc, needle, timeout=60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if needle in line:
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"the import never logged {needle!r} (exit code {proc.poll()})")


def test_kill_9_during_import_leaves_the_old_version_and_counts(tmp_path):
    path = tmp_path / "k.sqlite"
    with KnowledgeBase.open(path, create=True) as kb:
        kb.import_file(FIXTURES / "mini_kb.jsonl")
        before = (kb.version, kb.store.counts(), list(kb.export()))
    big = tmp_path / "big.jsonl"
    _big_file(big)
    proc = subprocess.Popen(
        [sys.executable, "-c", KB_ONLY, "kb", "import", str(big), "--kb", str(path), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        line = _wait_for_line(proc, "writing 20000 records")
        time.sleep(0.3)  # well inside the transaction: writing 300,000 facts takes seconds
        assert proc.poll() is None, f"the import finished before it could be killed: {line}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    with KnowledgeBase.open(path) as kb:
        assert (kb.version, kb.store.counts(), list(kb.export())) == before
        assert kb.store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kb.delete("偏头痛")  # the write lock was released with the killed process
        assert not kb.has_entity("偏头痛")
