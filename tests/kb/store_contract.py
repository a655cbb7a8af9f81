"""The contract every KB storage backend must pass (KnowledgeStore in ktune/kb/store.py).

A backend's test module subclasses `StoreContract` and overrides the `store` fixture to return a fresh,
empty store (see test_sqlite_store.py). Written against the Protocol only: no SQL here.
"""

import pytest

from ktune.kb.store import EMPTY_VERSION

MIGRAINE = {"常见症状": ["搏动性头痛", "恶心"], "别称": ["偏头疼"], "就诊科室": ["神经内科"]}
CAPSULE = {"成份": ["阿莫西林"], "商品名": ["阿莫仙"]}


def fill(store, entities: dict[str, dict[str, list[str]]], kinds: dict[str, str] | None = None) -> None:
    with store.transaction():
        ids = store.entity_ids()
        for name, facts in entities.items():
            store.upsert_entity(name, facts, ids)
        store.set_kinds(kinds or {n: "other" for n in entities})


class StoreContract:
    @pytest.fixture
    def store(self):
        raise NotImplementedError("a backend's test class overrides the `store` fixture")

    def test_a_new_store_is_empty(self, store):
        assert store.counts() == {"entities": 0, "facts": 0, "aliases": 0, "predicates": 0}
        assert store.content_hash() == EMPTY_VERSION
        assert store.get_meta() == {} and list(store.iter_entities()) == []

    def test_upserted_facts_read_back_in_order(self, store):
        fill(store, {"偏头痛": MIGRAINE}, {"偏头痛": "disease"})
        assert store.facts("偏头痛") == dict(sorted(MIGRAINE.items()))
        assert store.kind("偏头痛") == "disease"
        assert store.facts("不存在") == {} and store.kind("不存在") is None

    def test_upsert_replaces_only_the_given_predicates(self, store):
        fill(store, {"偏头痛": MIGRAINE})
        fill(store, {"偏头痛": {"常见症状": ["畏光"], "治疗": ["休息"]}})
        assert store.facts("偏头痛") == {
            "别称": ["偏头疼"], "常见症状": ["畏光"], "治疗": ["休息"], "就诊科室": ["神经内科"]
        }

    def test_delete_removes_an_entity_or_some_predicates(self, store):
        fill(store, {"偏头痛": MIGRAINE, "阿莫西林胶囊": CAPSULE})
        with store.transaction():
            ids = store.entity_ids()
            assert store.delete("偏头痛", ["别称", "就诊科室"], ids) == 2
            assert store.delete("阿莫西林胶囊", None, ids) == 2
            assert store.delete("不存在", None, ids) == 0
        assert store.facts("偏头痛") == {"常见症状": ["搏动性头痛", "恶心"]}
        assert store.kind("阿莫西林胶囊") is None

    def test_drop_empty_entities_removes_entities_without_facts(self, store):
        fill(store, {"偏头痛": MIGRAINE})
        with store.transaction():
            store.delete("偏头痛", list(MIGRAINE), store.entity_ids())
            assert store.drop_empty_entities() == 1
        assert store.counts()["entities"] == 0

    def test_a_failed_transaction_leaves_the_store_unchanged(self, store):
        fill(store, {"偏头痛": MIGRAINE})
        before = (store.content_hash(), store.counts(), list(store.iter_facts()))
        with pytest.raises(RuntimeError), store.transaction():
            store.upsert_entity("阿莫西林胶囊", CAPSULE, store.entity_ids())
            store.set_meta({"version": "x"})
            raise RuntimeError("boom")
        assert (store.content_hash(), store.counts(), list(store.iter_facts())) == before
        assert "version" not in store.get_meta()

    def test_content_hash_depends_on_content_not_insertion_order(self, store):
        fill(store, {"偏头痛": MIGRAINE, "阿莫西林胶囊": CAPSULE})
        h = store.content_hash()
        with store.transaction():
            store.clear()
        fill(store, {"阿莫西林胶囊": CAPSULE, "偏头痛": MIGRAINE})
        assert store.content_hash() == h != EMPTY_VERSION
        fill(store, {"偏头痛": {"别称": ["偏头疼", "偏头风"]}})
        assert store.content_hash() != h

    def test_content_hash_covers_kinds(self, store):
        fill(store, {"偏头痛": MIGRAINE}, {"偏头痛": "disease"})
        h = store.content_hash()
        with store.transaction():
            store.set_kinds({"偏头痛": "other"})
        assert store.content_hash() != h

    def test_iterators_are_sorted_and_complete(self, store):
        fill(store, {"阿莫西林胶囊": CAPSULE, "偏头痛": MIGRAINE}, {"阿莫西林胶囊": "drug", "偏头痛": "disease"})
        assert list(store.iter_entities()) == sorted([("阿莫西林胶囊", "drug"), ("偏头痛", "disease")])
        facts = list(store.iter_facts())
        assert len(facts) == 6 and facts == sorted(facts, key=lambda f: (f[0], f[1]))
        assert store.predicates_by_entity() == {"偏头痛": set(MIGRAINE), "阿莫西林胶囊": set(CAPSULE)}
        assert store.fact_counts() == {"偏头痛": 4, "阿莫西林胶囊": 2}
        assert store.predicate_counts()["常见症状"] == 2
        assert store.kind_counts() == {"disease": 1, "drug": 1}

    def test_facts_with_predicates_selects_by_predicate(self, store):
        fill(store, {"偏头痛": MIGRAINE, "阿莫西林胶囊": CAPSULE})
        assert store.facts_with_predicates(["别称", "商品名"]) == [("偏头痛", "别称", "偏头疼"), ("阿莫西林胶囊", "商品名", "阿莫仙")]
        assert store.facts_with_predicates([]) == []

    def test_replace_aliases_keeps_known_entities_only(self, store):
        fill(store, {"偏头痛": MIGRAINE})
        with store.transaction():
            store.replace_aliases([("偏头疼", "偏头痛", "别称"), ("x", "不存在", "别称"), ("偏头疼", "偏头痛", "别称")])
        assert list(store.iter_aliases()) == [("偏头疼", "偏头痛", "别称")]
        with store.transaction():
            store.replace_aliases([])
        assert store.counts()["aliases"] == 0

    def test_meta_is_set_and_overwritten(self, store):
        with store.transaction():
            store.set_meta({"version": "a", "source": "s"})
            store.set_meta({"version": "b"})
        assert store.get_meta() == {"version": "b", "source": "s"}

    def test_clear_empties_everything_but_meta(self, store):
        fill(store, {"偏头痛": MIGRAINE})
        with store.transaction():
            store.set_meta({"k": "v"})
            store.clear()
        assert store.counts()["entities"] == 0 and store.get_meta() == {"k": "v"}

    def test_every_migration_is_recorded(self, store):
        assert store.applied_migrations() and store.applied_migrations() == sorted(store.applied_migrations())
