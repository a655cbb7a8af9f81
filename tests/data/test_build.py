"""The dataset folder: determinism, contract fields, splits, gold knowledge, refusals, few-shot, manifest."""

import json

from ktune.data import build_dataset
from ktune.data.build import SPLITS
from ktune.data.generate import mentioned_entities
from ktune.prompt import PROVENANCE_PREFIX, strip_provenance

from .conftest import read_jsonl, small_config

FIELDS = [
    "id",
    "question",
    "entity",
    "attribute",
    "knowledge",
    "answer",
    "kind",
    "split",
    "template",
    "surface",
    "entity_kind",
]


def _all_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_and_kb_give_byte_identical_files(data_kb, built, tmp_path):
    first, _ = built
    build_dataset(data_kb, tmp_path / "again", small_config())
    a, b = _all_files(first), _all_files(tmp_path / "again")
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_another_seed_gives_other_questions(data_kb, built, tmp_path):
    first, _ = built
    build_dataset(data_kb, tmp_path / "other", small_config(seed=99, exports=False))
    q1 = {r["question"] for r in read_jsonl(first / "train.jsonl")}
    q2 = {r["question"] for r in read_jsonl(tmp_path / "other" / "train.jsonl")}
    assert q1 != q2


def test_records_follow_the_contract(built):
    out, report = built
    for split in SPLITS:
        records = read_jsonl(out / f"{split}.jsonl")
        assert records, split
        assert len(records) == report["counts"][split]
        for r in records:
            assert list(r) == FIELDS
            assert r["split"] == split and r["kind"] in ("in_kb", "no_knowledge")
            assert r["surface"] and r["surface"] in r["question"]
    assert len({r["id"] for s in SPLITS for r in read_jsonl(out / f"{s}.jsonl")}) == sum(
        report["counts"].values()
    )


def test_every_knowledge_equals_a_fresh_acquire_knowledge(data_kb, built):
    out, _ = built
    for split in SPLITS:
        for r in read_jsonl(out / f"{split}.jsonl"):
            if r["entity"] is not None:
                assert r["knowledge"] == data_kb.acquire_knowledge(r["entity"], r["attribute"]), r["id"]
            if r["kind"] == "in_kb":
                assert r["knowledge"], r["id"]
                assert data_kb.link(r["surface"], 1)[0].entity == r["entity"], r["surface"]
                assert data_kb.kind(r["entity"]) == r["entity_kind"]
                assert r["attribute"] in data_kb.schema.attributes_for_kind(r["entity_kind"])


def test_in_kb_answers_end_with_the_provenance_of_their_knowledge(built):
    out, _ = built
    for r in read_jsonl(out / "train.jsonl"):
        if r["kind"] == "in_kb":
            last = r["answer"].rsplit("\n", 1)[1]
            assert last.startswith(PROVENANCE_PREFIX)
            assert json.loads(last[len(PROVENANCE_PREFIX) :]) == r["knowledge"]
            assert strip_provenance(r["answer"]) and PROVENANCE_PREFIX not in strip_provenance(r["answer"])


def test_refusal_records_have_no_knowledge_and_no_provenance(data_kb, built):
    out, _ = built
    seen_absent = seen_lacking = 0
    for split in ("train", "test_no_knowledge"):
        for r in read_jsonl(out / f"{split}.jsonl"):
            if r["kind"] != "no_knowledge":
                continue
            assert r["knowledge"] == {} and PROVENANCE_PREFIX not in r["answer"]
            if r["entity"] is None:  # an entity the KB lacks: the query target is 无
                seen_absent += 1
                assert not data_kb.has_entity(r["surface"]) and r["surface"] in r["answer"]
            else:  # a KB entity asked about an attribute it lacks
                seen_lacking += 1
                assert data_kb.acquire_knowledge(r["entity"], r["attribute"]) == {}
                assert r["entity"] in r["answer"] and r["attribute"] in r["answer"]
    assert seen_absent and seen_lacking


def test_unseen_entities_and_their_aliases_never_reach_train(data_kb, built):
    out, report = built
    train = read_jsonl(out / "train.jsonl") + read_jsonl(out / "dev.jsonl")
    unseen = {r["entity"] for r in read_jsonl(out / "test_unseen.jsonl")}
    assert unseen
    names = {r["entity"] for r in train}
    assert not unseen & names
    for r in train:
        assert not mentioned_entities(data_kb.linker, r["question"], r["surface"]) & unseen, r["question"]
    assert report["checks"]["unseen_entities_not_in_train"]["ok"]


def test_test_questions_never_appear_in_train(built):
    out, _ = built
    train = {r["question"] for r in read_jsonl(out / "train.jsonl")}
    for split in ("dev", "test_seen", "test_unseen", "test_no_knowledge"):
        assert not {r["question"] for r in read_jsonl(out / f"{split}.jsonl")} & train


def test_test_seen_entities_were_trained(built):
    out, _ = built
    trained = {r["entity"] for r in read_jsonl(out / "train.jsonl")}
    assert {r["entity"] for r in read_jsonl(out / "test_seen.jsonl")} <= trained


def test_absent_terms_in_the_test_are_not_trained(built):
    out, _ = built
    train = {r["surface"] for r in read_jsonl(out / "train.jsonl") if r["entity"] is None}
    test = {r["surface"] for r in read_jsonl(out / "test_no_knowledge.jsonl") if r["entity"] is None}
    assert train and test and not train & test


def test_fewshot_subsets_are_nested_subsets_of_train(built):
    out, _ = built
    train = {r["id"] for r in read_jsonl(out / "train.jsonl")}
    prev = []
    for n in (50, 100, 200):
        ids = [r["id"] for r in read_jsonl(out / "fewshot" / f"train_{n}.jsonl")]
        assert len(ids) == n and set(ids) <= train and ids[: len(prev)] == prev
        prev = ids


def test_manifest_and_report_describe_the_files(data_kb, built):
    out, report = built
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["kb_version"] == data_kb.version
    assert manifest["schema_version"] == data_kb.schema.version
    assert manifest["counts"] == report["counts"] and manifest["data_version"] == report["data_version"]
    assert report["ok"], {k: v for k, v in report["checks"].items() if not v["ok"]}
    assert "## Checks" in (out / "report.md").read_text(encoding="utf-8")


def test_the_manifest_names_the_packaged_inputs_so_an_edited_one_is_another_dataset(built, tmp_path, monkeypatch):
    import ktune.kb.linker as linker
    from ktune.data.build import GENERATOR_VERSION, input_digests

    manifest = json.loads((built[0] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["inputs"] == input_digests() and manifest["generator_version"] == GENERATOR_VERSION
    assert set(manifest["inputs"]) == {"question_bank.json", "answer_bank.json", "absent_terms.json", "lay_names.json"}
    edited = tmp_path / "lay_names.json"
    edited.write_text(linker.LAY_NAMES_PATH.read_text(encoding="utf-8").replace("心肌梗死", "心肌梗塞"), "utf-8")
    monkeypatch.setattr(linker, "LAY_NAMES_PATH", edited)
    assert input_digests()["lay_names.json"] != manifest["inputs"]["lay_names.json"]


def test_a_field_the_kbs_own_other_name_for_the_entry_answers_is_no_refusal(tmp_path):
    """羊耳蒜 has no 采收 facts, but the KB names it as 见血清's 别称 and 见血清 has them: stage 1 answers from 见血清
    (answering_entry), so the dataset must not teach or test a refusal for it; a field neither entry has still is one."""
    from ktune.data.generate import predicates_by_entity
    from ktune.data.splits import entity_pools

    from ..conftest import kb_from_records

    kb = kb_from_records(tmp_path, [
        {"中心词": "见血清", "别称": ["羊耳蒜"], "功效": ["凉血止血"], "采收时间": ["夏秋采收"]},
        {"中心词": "羊耳蒜", "功效": ["活血"], "性味": ["甘"]},
        {"中心词": "野菊花", "功效": ["清热解毒"], "性味": ["苦"]},
    ])
    try:
        pools = entity_pools(kb, predicates_by_entity(kb), set(), small_config())
        assert kb.kind("羊耳蒜") == kb.kind("见血清") == "herb"
        assert "产地与采收" not in pools.lacking["羊耳蒜"]  # 见血清 answers it
        assert "产地与采收" in pools.lacking["野菊花"]  # no entry the KB names as 野菊花 has it
        assert "毒性" in pools.lacking["羊耳蒜"] and "毒性" in pools.lacking["见血清"]
    finally:
        kb.close()
