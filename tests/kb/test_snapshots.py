"""Read snapshots and per-version derived objects: what lets `ktune serve` pick up `ktune kb import` without
restart. Each backend (SQLite file, PostgreSQL when KTUNE_TEST_PG_URL is set): a reader opened read-only sees
one committed version for the whole of a snapshot while another process-like writer imports; the next snapshot
sees the new version, and the linker (and anything `derived`) is rebuilt for it, the old one left untouched.
Everything is sequenced by the test itself: no threads racing, no timings."""

import json
import threading

import pytest

from ktune.errors import KBError
from ktune.kb import KnowledgeBase
from tests.conftest import FIXTURES
from tests.kb.test_postgres_store import pg_url, server_url  # noqa: F401 -- fixtures

NEW = {"中心词": "失眠症", "就诊科室": ["神经内科"], "药物治疗": ["佐匹克隆"]}


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    """A KB location filled from mini_kb.jsonl by a writable KnowledgeBase (the `ktune kb import` side)."""
    where = str(tmp_path / "kb.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with KnowledgeBase.open(where, create=True) as kb:
        kb.import_file(FIXTURES / "mini_kb.jsonl")
    return where


def _import_new(where, tmp_path, records=(NEW,)) -> str:
    src = tmp_path / "new.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    with KnowledgeBase.open(where) as writer:
        return writer.import_file(src).version_after


def test_a_snapshot_keeps_its_version_while_an_import_commits_and_the_next_sees_the_new_one(target, tmp_path):
    with KnowledgeBase.open(target, read_only=True) as kb:
        old = kb.version
        with kb.snapshot() as version:
            assert version == old and kb.get("失眠症") == {}
            new = _import_new(target, tmp_path)  # commits while the snapshot is open
            assert new != old
            assert kb.version == old and kb.get("失眠症") == {} and not kb.has_entity("失眠症")
            assert kb.stats()["version"] == old
        with kb.snapshot() as version:
            assert version == kb.version == new == kb.current_version
            assert kb.get("失眠症") == {"就诊科室": ["神经内科"], "药物治疗": ["佐匹克隆"]}


def test_the_linker_is_rebuilt_for_a_new_version_and_the_old_one_is_left_as_it_was(target, tmp_path):
    with KnowledgeBase.open(target, read_only=True) as kb:
        with kb.snapshot():
            old_linker = kb.linker
            assert kb.linker is old_linker  # one per version
            assert all(link.entity != "失眠症" for link in kb.link("失眠症"))
        _import_new(target, tmp_path)
        assert kb.linker is old_linker  # outside a snapshot: the version last seen, no query
        with kb.snapshot():
            assert kb.linker is not old_linker
            assert kb.link("失眠症")[0].entity == "失眠症"
        assert "失眠症" not in old_linker.names  # never patched in place


def test_derived_objects_are_per_owner_and_version_and_built_once(target, tmp_path):
    class Owner:
        pass

    a, b, builds = Owner(), Owner(), []

    def build(tag):
        return lambda: builds.append(tag) or (tag, len(builds))

    with KnowledgeBase.open(target, read_only=True) as kb:
        with kb.snapshot():
            first = kb.derived(a, "x", build("a"))
            assert kb.derived(a, "x", build("a")) is first
            assert kb.derived(b, "x", build("b")) != first
        _import_new(target, tmp_path)
        with kb.snapshot():
            assert kb.derived(a, "x", build("a")) is not first
    assert builds == ["a", "b", "a"]


def test_nested_snapshots_join_the_outer_one_and_threads_get_their_own(target, tmp_path):
    with KnowledgeBase.open(target, read_only=True) as kb:
        old = kb.version
        seen = {}
        with kb.snapshot():
            new = _import_new(target, tmp_path)
            with kb.snapshot() as inner:
                seen["nested"] = inner

            def other():
                with kb.snapshot() as v:
                    seen["thread"] = (v, kb.has_entity("失眠症"))

            t = threading.Thread(target=other)
            t.start()
            t.join()
            assert kb.version == old
        assert seen == {"nested": old, "thread": (new, True)}


def test_a_read_only_kb_refuses_writes_and_says_how_to_change_it(target, tmp_path):
    with KnowledgeBase.open(target, read_only=True) as kb, pytest.raises(KBError, match="read-only.*ktune kb import"):
        kb.delete("偏头痛")


def test_read_only_open_of_a_missing_file_fails_clearly(tmp_path):
    with pytest.raises(KBError, match="no knowledge base at"):
        KnowledgeBase.open(tmp_path / "nope.sqlite", read_only=True)
    assert not (tmp_path / "nope.sqlite").exists()


def test_writes_inside_a_snapshot_are_refused(tmp_path):
    with KnowledgeBase.open(tmp_path / "kb.sqlite", create=True) as kb:
        kb.import_file(FIXTURES / "mini_kb.jsonl")
        with kb.snapshot(), pytest.raises(KBError, match="inside a read snapshot"):
            kb.delete("偏头痛")


def test_a_grammar_reads_the_kb_only_while_it_is_built(target, tmp_path):
    """Lazy look-ups after the build (attributes of a surface) answer for the version it was built from."""
    from ktune.pipeline.trie import QueryGrammar
    from ktune.prompt import PromptFormat

    class CharTokenizer:  # one token per character
        def __call__(self, text, add_special_tokens=False):
            ids = [[ord(c) for c in t] for t in text] if isinstance(text, list) else [ord(c) for c in text]
            return {"input_ids": ids}

    with KnowledgeBase.open(target, read_only=True) as kb:
        with kb.snapshot():
            grammar = QueryGrammar.from_kb(kb, CharTokenizer(), PromptFormat())
        _import_new(target, tmp_path, [NEW, {"中心词": "偏头痛", "药物治疗": ["布洛芬"]}])
        with kb.snapshot():
            assert "药物治疗" in kb.attributes_of("偏头痛")
            assert "药物治疗" not in grammar.attributes_for_surface("偏头痛")  # the old version's answer
            assert grammar.entities_of("失眠症") == ()


def test_encode_texts_tokenises_each_text_once_per_tokenizer():
    from ktune.prompt import encode_texts

    class Counting:
        def __init__(self):
            self.seen = []

        def __call__(self, texts, add_special_tokens=False):
            self.seen += texts
            return {"input_ids": [[ord(c) for c in t] for t in texts]}

    tok = Counting()
    assert encode_texts(tok, ["ab", "c"]) == [(97, 98), (99,)]
    assert encode_texts(tok, ["c", "d", "ab"]) == [(99,), (100,), (97, 98)]
    assert sorted(tok.seen) == ["ab", "c", "d"]
    assert encode_texts(Counting(), ["ab"]) == [(97, 98)]  # another tokenizer: its own memo
