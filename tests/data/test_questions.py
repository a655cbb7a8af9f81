"""The question bank: coverage per attribute, held-out templates, kind restrictions, rendering."""

import random

import pytest

from ktune.data.questions import MIN_PHRASINGS, QuestionBank
from ktune.errors import ConfigError
from ktune.kb.schema import Schema

from .conftest import read_jsonl

CALIBRATION_CUES = {  # cues a calibration run missed (shared/notes/calibration.md) -> their attribute
    "是用什么做的": "成份",
    "孩子能吃{e}吗，吃多少": "用法用量",
    "哺乳期能用{e}吗": "注意事项",
    "得了{e}会怎么样": "临床表现",
}


def test_every_schema_attribute_has_at_least_15_phrasings_plus_vignettes():
    bank = QuestionBank.load()
    schema = Schema.load()
    bank.check_schema(schema)
    for attr in schema.names:
        assert bank.phrasings(attr) >= MIN_PHRASINGS, attr
        styles = {t.style for t in bank.templates[attr]}
        assert styles == {"core", "search", "vignette"}, attr


def test_calibration_misses_are_in_the_bank():
    bank = QuestionBank.load()
    for cue, attr in CALIBRATION_CUES.items():
        assert any(cue in t.text for t in bank.templates[attr]), (cue, attr)


def test_each_attribute_keeps_train_and_heldout_templates_of_every_style():
    bank = QuestionBank.load(seed=5, heldout_fraction=0.3)
    for attr, temps in bank.templates.items():
        for style in ("core", "search", "vignette"):
            ids = {t.id for t in temps if t.style == style}
            assert ids & bank.heldout and ids - bank.heldout, (attr, style)


def test_heldout_split_depends_on_seed_only():
    assert QuestionBank.load(seed=1).heldout == QuestionBank.load(seed=1).heldout
    assert QuestionBank.load(seed=1).heldout != QuestionBank.load(seed=2).heldout


def test_train_uses_no_heldout_template_and_tests_use_only_heldout(built):
    out, _ = built
    from ktune.data.config import DataConfig

    config = DataConfig()
    bank = QuestionBank.load(seed=config.seed, heldout_fraction=config.heldout_fraction)
    assert not {r["template"] for r in read_jsonl(out / "train.jsonl")} & bank.heldout
    for split in ("test_seen", "test_unseen", "test_no_knowledge"):
        assert {r["template"] for r in read_jsonl(out / f"{split}.jsonl")} <= bank.heldout


def test_kind_restricted_templates_are_only_used_for_their_kind(built):
    out, _ = built
    bank = QuestionBank.load()
    by_id = {t.id: t for temps in bank.templates.values() for t in temps}
    for split in ("train", "dev", "test_seen", "test_unseen"):
        for r in read_jsonl(out / f"{split}.jsonl"):
            assert by_id[r["template"]].fits(r["entity_kind"]), r


def test_rendered_questions_name_the_surface_in_every_style():
    bank = QuestionBank.load()
    rng = random.Random(0)
    for temps in bank.templates.values():
        for t in temps:
            q = bank.render(t, "阿莫仙", "drug", rng)
            assert "阿莫仙" in q and "{" not in q and q != t.text


def test_a_template_without_the_entity_slot_is_refused(tmp_path):
    import json

    from ktune.data.questions import BANK_PATH

    raw = json.loads(BANK_PATH.read_text(encoding="utf-8"))
    raw["attributes"]["成份"]["cores"].append("成分是什么？")
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="lacks the"):
        QuestionBank.load(path=path)
