"""Shared fixtures. Every test runs with its own KTUNE_HOME and offline."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def kb_from_records(folder: Path, records: list[dict]):
    """A KB in `folder` imported from CMeKG-style records (one dict per entity); the caller closes it."""
    import json

    from ktune.kb import KnowledgeBase

    src = folder / "kb.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    kb = KnowledgeBase.open(folder / "kb.sqlite", create=True)
    kb.import_file(src)
    return kb


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KTUNE_HOME", str(tmp_path / "ktune_home"))
    monkeypatch.delenv("KTUNE_KB", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KTUNE_THREADS", "1")  # "auto" threads in tests: tiny models, a shared 2-core machine


@pytest.fixture
def mini_kb(tmp_path):
    """A small KB imported from tests/fixtures/mini_kb.jsonl."""
    from ktune.kb import KnowledgeBase

    kb = KnowledgeBase.open(tmp_path / "mini.sqlite", create=True)
    kb.import_file(FIXTURES / "mini_kb.jsonl")
    yield kb
    kb.close()


@pytest.fixture
def premise_kb(tmp_path):
    """A small KB with real CMeKG values for 利福平片 and a few drugs and diseases (premise questions)."""
    from ktune.kb import KnowledgeBase

    kb = KnowledgeBase.open(tmp_path / "premise.sqlite", create=True)
    kb.import_file(FIXTURES / "premise_kb.jsonl")
    yield kb
    kb.close()
