"""Eval fixtures: a hand-written test set over the mini KB, in the dataset contract's record format."""

import json

import pytest

from ktune.prompt import provenance_line

# (split, question, entity, attribute, surface, template)
QUESTIONS = [
    ("test_seen", "急性中耳炎吃什么药？", "急性中耳炎", "药物治疗", "急性中耳炎", "t_drug_1"),
    ("test_seen", "偏头痛有哪些症状？", "偏头痛", "临床表现", "偏头痛", "t_sym_1"),
    ("test_seen", "高血压会有什么并发症？", "高血压", "并发症", "高血压", "t_comp_1"),
    ("test_seen", "阿莫西林胶囊有什么副作用？", "阿莫西林胶囊", "不良反应", "阿莫西林胶囊", "t_adr_1"),
    ("test_unseen", "格华止的用法用量是什么？", "盐酸二甲双胍片", "用法用量", "格华止", "t_dose_2"),
    ("test_unseen", "肝胆管结石病应该挂什么科？", "肝胆管结石病", "就诊科室", "肝胆管结石病", "t_dept_2"),
    ("test_unseen", "黄芪的功效是什么？", "黄芪", "功效", "黄芪", "t_eff_2"),
    ("test_unseen", "感冒会传染吗？", "急性鼻炎", "传染性", "感冒", "t_inf_2"),
    ("test_no_knowledge", "糖尿病足怎么治疗？", None, None, "糖尿病足", "t_treat_1"),
    ("test_no_knowledge", "偏头痛怎么预防？", "偏头痛", "预防", "偏头痛", "t_prev_1"),
    ("test_no_knowledge", "幽门螺杆菌感染有什么症状？", None, None, "幽门螺杆菌感染", "t_sym_1"),
]

REFUSAL = "知识库中没有相关信息，无法根据知识库回答这个问题。"


def make_records(kb) -> list[dict]:
    recs = []
    for n, (split, q, ent, attr, surface, tpl) in enumerate(QUESTIONS):
        know = kb.acquire_knowledge(ent, attr) if ent else {}
        values = [v for preds in know.values() for vs in preds.values() for v in vs]
        answer = f"{ent}的{attr}包括：{'、'.join(values)}。\n{provenance_line(know)}" if know else REFUSAL
        recs.append({
            "id": f"{split}-{n}", "question": q, "entity": ent, "attribute": attr, "knowledge": know,
            "answer": answer, "kind": "in_kb" if know else "no_knowledge", "split": split, "template": tpl,
            "surface": surface, "entity_kind": kb.kind(ent) if ent else None,
        })
    return recs


@pytest.fixture
def eval_data(tmp_path, mini_kb):
    """A dataset folder with the three test splits and a manifest."""
    d = tmp_path / "data"
    d.mkdir()
    recs = make_records(mini_kb)
    for split in ("test_seen", "test_unseen", "test_no_knowledge"):
        rows = [r for r in recs if r["split"] == split]
        (d / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    manifest = {"data_version": "fixture", "kb_version": mini_kb.version, "schema_version": "1", "seed": 0,
                "counts": {s: sum(r["split"] == s for r in recs) for s in ("test_seen", "test_unseen", "test_no_knowledge")}}
    (d / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    return d


def write_data_dir(d, recs, manifest_kb_version="fixture"):
    d.mkdir(parents=True, exist_ok=True)
    for split in ("test_seen", "test_unseen", "test_no_knowledge"):
        rows = [r for r in recs if r["split"] == split]
        (d / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    train = [{**r, "split": "train"} for r in recs]
    for split in ("train", "dev"):
        (d / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train), "utf-8")
    (d / "fewshot").mkdir(exist_ok=True)
    for n in (4, 11):
        (d / "fewshot" / f"train_{n}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train[:n]), "utf-8")
    (d / "manifest.json").write_text(json.dumps({"data_version": "fixture", "kb_version": manifest_kb_version,
                                                 "schema_version": "1", "seed": 0, "counts": {}}), "utf-8")
    return d


@pytest.fixture(scope="session")
def tiny_eval_run(tmp_path_factory):
    """(kb path, data dir, run dir): a tiny model trained on the fixture questions themselves (shared, read-only).

    Trained on its own test items on purpose: eval tests check the plumbing from model to scored rows,
    so the run must reproduce known queries.
    """
    from ktune.kb import KnowledgeBase
    from ktune.train.tiny import build_tiny_run
    from tests.conftest import FIXTURES

    root = tmp_path_factory.mktemp("eval_run")
    kb = KnowledgeBase.open(root / "mini.sqlite", create=True)
    kb.import_file(FIXTURES / "mini_kb.jsonl")
    data = write_data_dir(root / "data", make_records(kb), kb.version)
    kb.close()
    build_tiny_run(data, root / "run", steps=200, eval_every=0, eval_samples=4)
    return root / "mini.sqlite", data, root / "run"
