"""The attribute schema: coverage of raw predicates, kinds, and clear errors for malformed user schemas."""

import json

import pytest

from ktune.errors import KBError
from ktune.kb import KnowledgeBase, Schema
from ktune.kb.schema import DEFAULT_SCHEMA_PATH


def test_the_shipped_schema_has_33_attributes_each_gathering_predicates():
    schema = Schema.load()
    assert len(schema.attributes) == 33
    assert all(a.predicates and a.kinds for a in schema.attributes.values())
    assert set(schema.attributes_for_kind("drug")) >= {"用法用量", "不良反应", "禁忌", "药物相互作用"}
    assert set(schema.attributes_for_kind("disease")) >= {"临床表现", "治疗方案", "药物治疗", "就诊科室"}


def test_every_fixture_predicate_is_mapped_or_listed_as_not_queryable(mini_kb):
    assert mini_kb.schema.unmapped_predicates(mini_kb.store.predicate_counts(), min_facts=1) == []
    assert mini_kb.stats()["unmapped_predicates_20plus"] == []


def test_a_frequent_unknown_predicate_is_reported_as_unmapped(tmp_path):
    src = tmp_path / "odd.jsonl"
    lines = [json.dumps({"中心词": f"病{i}", "奇怪谓词": ["x"], "常见症状": ["发热"]}, ensure_ascii=False) for i in range(20)]
    src.write_text("\n".join(lines), encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "k.sqlite", create=True) as kb:
        kb.import_file(src)
        assert kb.stats()["unmapped_predicates_20plus"] == ["奇怪谓词"]
        kb.delete("病0", ["奇怪谓词"])
        assert kb.stats()["unmapped_predicates_20plus"] == []  # 19 facts: below the threshold


def test_schema_round_trips_through_json(tmp_path):
    schema = Schema.load()
    path = tmp_path / "s.json"
    path.write_text(json.dumps(schema.to_json(), ensure_ascii=False), encoding="utf-8")
    assert Schema.load(path) == schema


def test_a_user_schema_replaces_the_shipped_one(mini_kb, tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"version": "tiny-1", "attributes": {"症状": {"kinds": ["disease"], "predicates": ["常见症状"]}}}, ensure_ascii=False), encoding="utf-8")
    with KnowledgeBase.open(mini_kb.store.path, schema=path) as kb:
        assert kb.schema.names == ["症状"]
        assert kb.acquire_knowledge("偏头痛", "症状") == {"偏头痛": {"常见症状": ["搏动性头痛", "恶心", "畏光"]}}


def _shipped():
    return json.loads(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))


def _broken(mutate):
    raw = _shipped()
    mutate(raw)
    return json.dumps(raw, ensure_ascii=False)


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"version": "1", "attributes": {', "cannot read attribute schema"),
        ("", "cannot read attribute schema"),
        ('{"attributes": {}}', "malformed (missing or wrong field 'version')"),
        ('{"version": "1", "attributes": {"症状": {"kinds": ["disease"]}}}', "missing or wrong field 'predicates'"),
        ('{"version": "1", "attributes": []}', "malformed"),
        ('{"version": "1", "attributes": {}}', "defines no attributes"),
        (_broken(lambda r: r["attributes"]["病因"].update(predicates=[])), "'病因' gathers no predicates"),
        (_broken(lambda r: r["attributes"]["病因"]["predicates"].append("常见症状")), "'常见症状' is mapped twice"),
        (_broken(lambda r: r["attributes"]["病因"].update(kinds=["illness"])), "unknown kinds ['illness']; valid kinds"),
        (_broken(lambda r: r["attributes"]["病因"]["predicates"].append("别称")), "'别称' is mapped to '病因' and listed"),
    ],
)
def test_a_malformed_user_schema_gives_a_clear_error(tmp_path, text, message):
    path = tmp_path / "bad_schema.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(KBError) as err:
        Schema.load(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_missing_schema_file_names_the_fix(tmp_path):
    with pytest.raises(KBError, match="omit --schema to use the shipped one"):
        Schema.load(tmp_path / "nope.json")
