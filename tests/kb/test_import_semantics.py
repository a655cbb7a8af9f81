"""Upsert / replace / delete semantics, the content version hash, export round trips, derived kinds and aliases."""

import json

import pytest

from ktune.kb import KnowledgeBase
from tests.conftest import FIXTURES


def _write(tmp_path, name, records) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def test_upsert_replaces_only_the_given_predicates_and_adds_new_entities(mini_kb, tmp_path):
    before = mini_kb.get("偏头痛")
    src = _write(tmp_path, "up.jsonl", [{"中心词": "偏头痛", "常见症状": ["畏声"]}, {"中心词": "失眠", "就诊科室": ["神经内科"]}])
    report = mini_kb.import_file(src)
    after = mini_kb.get("偏头痛")
    assert after["常见症状"] == ["畏声"]
    assert {p: v for p, v in after.items() if p != "常见症状"} == {p: v for p, v in before.items() if p != "常见症状"}
    assert mini_kb.get("失眠") == {"就诊科室": ["神经内科"]}
    assert report.entities_after == report.entities_before + 1


def test_replace_makes_the_file_the_whole_kb(mini_kb):
    report = mini_kb.import_file(FIXTURES / "kb_same.jsonl", mode="replace")
    assert mini_kb.entities() == ["急性中耳炎", "阿莫西林胶囊"]
    assert report.entities_before == 10 and report.entities_after == 2
    assert mini_kb.link("偏头疼") == []  # aliases of removed entities are gone too


def test_delete_mode_removes_listed_entities_or_only_listed_predicates(mini_kb, tmp_path):
    src = _write(tmp_path, "del.jsonl", [{"中心词": "高血压"}, {"中心词": "偏头痛", "别称": [], "就诊科室": []}])
    report = mini_kb.import_file(src, mode="delete")
    assert not mini_kb.has_entity("高血压")
    assert set(mini_kb.get("偏头痛")) == {"常见症状", "常见病因"}
    assert report.facts_deleted == 6 + 2  # all 6 facts of 高血压; 别称 and 就诊科室 of 偏头痛
    assert all(link.method != "alias:别称" for link in mini_kb.link("偏头疼"))


def test_deleting_an_entity_removes_its_facts_aliases_and_links(mini_kb):
    assert mini_kb.link("阿莫仙")[0].entity == "阿莫西林胶囊"
    report = mini_kb.delete("阿莫西林胶囊")
    assert not mini_kb.has_entity("阿莫西林胶囊") and mini_kb.get("阿莫西林胶囊") == {}
    assert report.facts_deleted == 10
    assert all(e != "阿莫西林胶囊" for _, e, _ in mini_kb.store.iter_aliases())
    assert all(link.entity != "阿莫西林胶囊" for link in mini_kb.link("阿莫仙"))


def test_deleting_the_last_predicate_drops_the_entity(mini_kb):
    mini_kb.delete("黄芪", ["性味", "功效", "入药部位", "用量"])
    assert not mini_kb.has_entity("黄芪")


def test_deleting_an_unknown_entity_changes_nothing(mini_kb):
    version = mini_kb.version
    report = mini_kb.delete("不存在的病")
    assert report.facts_deleted == 0 and mini_kb.version == version


def test_reimporting_the_same_content_keeps_the_version(mini_kb):
    version = mini_kb.version
    report = mini_kb.import_file(FIXTURES / "mini_kb.jsonl")
    assert report.version_before == report.version_after == version == mini_kb.version


@pytest.mark.parametrize(
    "record",
    [
        {"中心词": "偏头痛", "常见症状": ["搏动性头痛", "恶心"]},  # a value removed
        {"中心词": "偏头痛", "常见症状": ["恶心", "搏动性头痛", "畏光"]},  # the same values, reordered
        {"中心词": "偏头痛", "治疗": ["休息"]},  # a predicate added
        {"中心词": "新病", "常见症状": ["发热"]},  # an entity added
        {"中心词": "黄芪", "成份": ["黄芪甲苷"]},  # a predicate of another kind (drugs)
    ],
)
def test_any_change_changes_the_version(mini_kb, tmp_path, record):
    version = mini_kb.version
    mini_kb.import_file(_write(tmp_path, "c.jsonl", [record]))
    assert mini_kb.version != version


def test_export_then_import_into_a_fresh_kb_round_trips_the_version(mini_kb, tmp_path):
    src = _write(tmp_path, "export.jsonl", list(mini_kb.export()))
    with KnowledgeBase.open(tmp_path / "fresh.sqlite", create=True) as fresh:
        fresh.import_file(src)
        assert fresh.version == mini_kb.version
        assert list(fresh.export()) == list(mini_kb.export())
        assert list(fresh.store.iter_aliases()) == list(mini_kb.store.iter_aliases())


def test_the_version_does_not_depend_on_import_order(tmp_path):
    lines = (FIXTURES / "mini_kb.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "rev.jsonl").write_text("".join(reversed(lines)), encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "a.sqlite", create=True) as a, KnowledgeBase.open(
        tmp_path / "b.sqlite", create=True
    ) as b:
        a.import_file(FIXTURES / "mini_kb.jsonl")
        b.import_file(tmp_path / "rev.jsonl")
        assert a.version == b.version


def test_an_error_while_writing_rolls_back_the_whole_import(mini_kb, tmp_path, monkeypatch):
    before = (mini_kb.version, mini_kb.store.counts(), list(mini_kb.export()))
    src = _write(tmp_path, "ok.jsonl", [{"中心词": f"病{i}", "常见症状": ["发热"]} for i in range(5)])
    calls = []
    real = mini_kb.store.upsert_entity

    def flaky(name, facts, ids):
        calls.append(name)
        if len(calls) == 3:
            raise OSError("disk full")
        real(name, facts, ids)

    monkeypatch.setattr(mini_kb.store, "upsert_entity", flaky)
    with pytest.raises(OSError, match="disk full"):
        mini_kb.import_file(src)
    assert (mini_kb.version, mini_kb.store.counts(), list(mini_kb.export())) == before


def test_import_derives_kinds_from_predicates(mini_kb):
    kinds = {e: mini_kb.kind(e) for e in ("偏头痛", "阿莫西林胶囊", "黄芪")}
    assert kinds == {"偏头痛": "disease", "阿莫西林胶囊": "drug", "黄芪": "herb"}
    assert mini_kb.kind("不存在的病") is None


def test_import_records_source_sha256_and_history_in_meta(mini_kb):
    meta = mini_kb.meta
    assert meta["source"].endswith("mini_kb.jsonl") and len(meta["source_sha256"]) == 64
    assert json.loads(meta["sources"])[-1]["mode"] == "upsert"
    assert meta["schema_version"] == mini_kb.schema.version


def test_linker_sees_entities_added_by_a_later_import(mini_kb, tmp_path):
    assert all(link.entity != "失眠症" for link in mini_kb.link("失眠症"))  # builds the linker's cache
    mini_kb.import_file(_write(tmp_path, "n.jsonl", [{"中心词": "失眠症", "就诊科室": ["神经内科"]}]))
    assert mini_kb.link("失眠症")[0].entity == "失眠症"


def test_an_unknown_import_mode_names_the_choices(mini_kb):
    from ktune.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown import mode 'merge'; choose one of upsert, replace, delete"):
        mini_kb.import_file(FIXTURES / "kb_same.json", mode="merge")
