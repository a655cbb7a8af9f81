"""Fixtures for training tests: a contract-format dataset folder built from the mini KB, and one tiny trained run."""

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent.parent / "fixtures"

TEMPLATES = {
    "临床表现": ["{e}有什么症状？", "{e}的临床表现有哪些？"],
    "就诊科室": ["{e}应该挂什么科？", "{e}去哪个科室看？"],
    "适应症": ["{e}能治什么病？", "{e}主要用于什么？"],
    "用法用量": ["{e}怎么吃？", "{e}的用法用量是什么？"],
    "不良反应": ["{e}有什么副作用？"],
    "功效": ["{e}有什么功效？"],
}
NO_KB = ["量子康复胶囊有什么副作用？", "星尘综合征有什么症状？"]


def dataset_records(kb) -> list[dict]:
    from ktune.prompt import provenance_line

    records = []
    for entity in kb.entities():
        for attribute in kb.attributes_of(entity):
            for t, template in enumerate(TEMPLATES.get(attribute, [])):
                knowledge = kb.acquire_knowledge(entity, attribute)
                values = "、".join(v for preds in knowledge[entity].values() for v in preds)
                records.append({
                    "id": f"r{len(records)}", "question": template.format(e=entity), "entity": entity,
                    "attribute": attribute, "knowledge": knowledge,
                    "answer": f"{entity}的{attribute}：{values}。\n" + provenance_line(knowledge),
                    "kind": "in_kb", "split": "train", "template": f"{attribute}-{t}", "surface": entity,
                    "entity_kind": kb.kind(entity)})
    for q in NO_KB:
        records.append({"id": f"r{len(records)}", "question": q, "entity": None, "attribute": None, "knowledge": {},
                        "answer": "抱歉，知识库中没有相关知识。", "kind": "no_knowledge", "split": "train",
                        "template": "none", "surface": q[:5], "entity_kind": None})
    return records


def write_dataset(out: Path, records: list[dict]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    for split in ("train", "dev", "test_seen"):
        (out / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps({"data_version": "test-1", "kb_version": "kbhash",
                                                   "schema_version": "cmekg-attributes-1", "seed": 0}))
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A dataset folder (train = dev = test_seen) over the mini KB: about 30 in-KB questions + 2 refusals."""
    from ktune.kb import KnowledgeBase

    root = tmp_path_factory.mktemp("tiny_data")
    kb = KnowledgeBase.open(root / "mini.sqlite", create=True)
    kb.import_file(FIXTURES / "mini_kb.jsonl")
    records = dataset_records(kb)
    kb.close()
    return write_dataset(root / "data", records)


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """One tiny run trained for 300 steps on the query and answer steps (shared, read-only)."""
    from ktune.train.tiny import build_tiny_run

    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    info = build_tiny_run(tiny_data, run_dir, steps=300, eval_every=150, eval_samples=8, eval_split="dev")
    return run_dir, info


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread; several threads spin-wait on a busy 2-core machine (13x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
