"""Surface forms link back to their entity; answers read values cleanly and carry provenance."""

import json
import random

from ktune.data.answers import AnswerWriter, clean_value, display_values
from ktune.data.splits import alias_groups, allocate
from ktune.data.surfaces import SurfaceIndex, variants
from ktune.prompt import PROVENANCE_PREFIX


def test_every_surface_form_links_back_to_its_entity(mini_kb):
    index = SurfaceIndex(mini_kb)
    forms = dict(index.forms("阿莫西林胶囊"))
    assert forms["阿莫西林胶囊"] == "name" and "阿莫仙" in forms
    for entity in mini_kb.entities():
        for surface, _ in index.forms(entity):
            assert mini_kb.link(surface, 1)[0].entity == entity, (surface, entity)


def test_generic_names_are_offered_for_drug_products(mini_kb):
    forms = dict(SurfaceIndex(mini_kb).forms("盐酸二甲双胍片"))
    assert forms.get("二甲双胍") == "generic"


def test_a_disease_is_also_named_without_its_suffix_and_with_modifiers(mini_kb):
    index = SurfaceIndex(mini_kb)
    assert dict(index.forms("肝胆管结石病")).get("肝胆管结石") == "variant"
    rng = random.Random(0)
    modified = {index.choose("偏头痛", 0.0, rng, modifier_share=0.99) for _ in range(30)}
    assert any(s != "偏头痛" and "偏头痛" in s for s, _ in modified)
    for surface, source in modified:
        assert mini_kb.link(surface, 1)[0].entity == "偏头痛", surface
        assert source in ("name", "modifier")


def test_case_and_width_variants_of_latin_names():
    assert set(variants("尿素维E乳膏")) == {"尿素维e乳膏", "尿素维Ｅ乳膏"}
    assert variants("黄芪") == []


def test_values_lose_markup_and_long_lists_end_with_deng():
    assert clean_value("皮疹<sup>[药典]</sup>") == "皮疹"
    text, shown = display_values(["腹泻", "皮疹<sup>[药典]</sup>", "皮疹"], 10)
    assert text == "腹泻、皮疹" and shown == ["腹泻", "皮疹"]
    text, shown = display_values([f"症状{i}" for i in range(15)], 10)
    assert text.endswith("等") and len(shown) == 10


def test_answer_states_values_adds_safety_for_drugs_and_ends_with_provenance(mini_kb):
    k = mini_kb.acquire_knowledge("阿莫西林胶囊", "不良反应")
    answer = AnswerWriter().answer("阿莫西林胶囊", "不良反应", "drug", "阿莫仙", k, random.Random(1))
    body, last = answer.rsplit("\n", 1)
    assert "腹泻" in body and "皮疹" in body and "<sup>" not in body and "阿莫仙" in body
    assert any(w in body for w in ("遵医嘱", "药师", "医生"))
    assert json.loads(last.removeprefix(PROVENANCE_PREFIX)) == k


def test_allocate_is_even_and_respects_capacity():
    assert allocate(10, {"a": 100, "b": 100}) == {"a": 5, "b": 5}
    assert allocate(10, {"a": 2, "b": 100}) == {"a": 2, "b": 8}
    assert sum(allocate(1000, {"a": 3, "b": 4}).values()) == 7


def test_entities_sharing_an_alias_form_one_group():
    group_of, groups = alias_groups(["甲片", "甲胶囊", "乙"], [("甲", "甲片", "p"), ("甲", "甲胶囊", "p")])
    assert group_of["甲片"] == group_of["甲胶囊"] != group_of["乙"]
    assert sorted(len(g) for g in groups.values()) == [1, 2]


def test_config_errors_name_the_bad_value_and_the_fix():
    import pytest

    from ktune.data.config import DataConfig
    from ktune.errors import ConfigError

    with pytest.raises(ConfigError, match="heldout_fraction=1.5"):
        DataConfig(heldout_fraction=1.5)
    with pytest.raises(ConfigError, match="teacher_url and teacher_model"):
        DataConfig(teacher_url="http://x")
    with pytest.raises(ConfigError, match="train_size=0"):
        DataConfig(train_size=0)
    assert DataConfig.from_json(DataConfig.scaled(200).to_json()) == DataConfig.scaled(200)


def test_homophone_typos_differ_from_the_name_and_still_link_back(data_kb):
    index = SurfaceIndex(data_kb)
    rng = random.Random(0)
    typos = {e: t for e in data_kb.entities() if (t := index.typo(e, rng))}
    assert typos
    for entity, typo in typos.items():
        assert typo != entity and len(typo) == len(entity)
        assert data_kb.link(typo, 1)[0].entity == entity
