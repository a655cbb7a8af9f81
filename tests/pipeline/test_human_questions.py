"""The hand-written human-style question set (tests/fixtures/human_questions.jsonl) is well-formed."""

import json
import os
from collections import Counter

import pytest

from ktune.kb.schema import Schema
from tests.conftest import FIXTURES

PATH = FIXTURES / "human_questions.jsonl"


def _records():
    return [json.loads(x) for x in PATH.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_human_questions_have_gold_queries_over_the_schema():
    records = _records()
    names = set(Schema.load().names)
    assert len(records) >= 100 and len({r["id"] for r in records}) == len(records)
    for r in records:
        assert r["question"].strip() and r["style"]
        assert (r["entity"] is None) == (r["attribute"] is None) == (r["kind"] == "no_knowledge")
        assert r["attribute"] is None or r["attribute"] in names
    styles = Counter(r["style"] for r in records)
    assert styles["no_kb"] >= 20
    assert {"generic", "colloquial", "typo", "vignette", "fragment", "two_part"} <= set(styles)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("KTUNE_FULL_KB"), reason="set KTUNE_FULL_KB to the full CMeKG SQLite file")
def test_every_gold_query_is_answerable_from_the_full_kb():
    from ktune.kb import KnowledgeBase

    with KnowledgeBase.open(os.environ["KTUNE_FULL_KB"]) as kb:
        for r in _records():
            if r["entity"] is not None:
                assert kb.acquire_knowledge(r["entity"], r["attribute"]), r
                for alt in r.get("alternatives", []):
                    assert kb.acquire_knowledge(alt, r["attribute"]), (alt, r)
