"""Entity linking: each tier finds the right entity with its method; ranking is deterministic."""

import random

import pytest

from ktune.kb import EntityLinker, KnowledgeBase, normalize
from tests.conftest import FIXTURES


@pytest.fixture
def link_kb(tmp_path):
    """mini_kb plus near neighbours (another metformin product, 肝内胆管结石, 儿童急性中耳炎, 阿莫西林颗粒)."""
    kb = KnowledgeBase.open(tmp_path / "link.sqlite", create=True)
    kb.import_file(FIXTURES / "mini_kb.jsonl")
    kb.import_file(FIXTURES / "kb_link.jsonl")
    yield kb
    kb.close()


def top(kb, text):
    links = kb.link(text)
    return (links[0].entity, links[0].method) if links else None


@pytest.mark.parametrize(
    "text,entity,method",
    [
        ("偏头痛", "偏头痛", "exact"),
        ("偏头疼", "偏头痛", "alias:别称"),
        ("感冒", "急性鼻炎", "alias:别称"),
        ("AOM", "急性中耳炎", "alias:同义词"),
        ("阿莫仙", "阿莫西林胶囊", "alias:商品名"),
        ("芬必得", "布洛芬缓释胶囊", "alias:商品名"),
        ("尿素维e乳膏", "尿素维E乳膏", "normalized"),
        ("尿素维Ｅ乳膏", "尿素维E乳膏", "normalized"),  # full-width letter
        (" 偏头痛 ", "偏头痛", "exact"),
        ("ａｏｍ", "急性中耳炎", "normalized_alias"),
        ("二甲双胍", "盐酸二甲双胍片", "generic"),
        ("盐酸二甲双胍", "盐酸二甲双胍片", "generic"),
        ("布洛芬", "布洛芬缓释胶囊", "generic"),
    ],
)
def test_each_tier_links_to_the_right_entity(link_kb, text, entity, method):
    assert top(link_kb, text) == (entity, method)


def test_generic_name_lists_every_product_plainest_first(link_kb):
    links = link_kb.link("二甲双胍")
    assert [x.entity for x in links] == ["盐酸二甲双胍片", "盐酸二甲双胍缓释片"]
    assert {x.method for x in links} == {"generic"} and links[0].score == 0.9


def test_a_name_without_its_disease_suffix_links_as_a_variant(link_kb):
    links = link_kb.link("肝胆管结石")
    assert [(x.entity, x.method, x.score) for x in links] == [("肝胆管结石病", "variant", 0.86)]


def test_truncated_name_prefers_the_entity_containing_it(link_kb):
    links = link_kb.link("肝胆管结")
    assert [x.entity for x in links[:2]] == ["肝胆管结石病", "肝内胆管结石"]
    assert links[0].method == "fuzzy" and links[0].score > links[1].score >= 0.7


@pytest.mark.parametrize(
    "typo,entity",
    [
        ("布洛芬缓译胶囊", "布洛芬缓释胶囊"),  # substitution
        ("布洛芬缓释胶", "布洛芬缓释胶囊"),  # deletion at the end
        ("阿莫西胶囊", "阿莫西林胶囊"),  # deletion inside
        ("急性中耳火", "急性中耳炎"),  # substitution at the end (火 is not a homophone of 炎)
    ],
)
def test_a_one_character_typo_is_linked_fuzzily(link_kb, typo, entity):
    assert top(link_kb, typo) == (entity, "fuzzy")


@pytest.mark.parametrize("typo,entity", [("高血鸭", "高血压"), ("偏头通", "偏头痛"), ("黄七", "黄芪")])
def test_a_pinyin_homophone_is_linked(link_kb, typo, entity):
    assert top(link_kb, typo) == (entity, "pinyin")


def test_exact_beats_alias_beats_fuzzy(link_kb):
    scores = [link_kb.link(t)[0].score for t in ("偏头痛", "偏头疼", "尿素维e乳膏", "二甲双胍", "肝胆管结石", "高血鸭", "肝胆管结")]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0


@pytest.mark.parametrize("text", ["", "   ", "量子计算机", "xyzzy", "的", "🙂🙂"])
def test_unknown_text_links_to_nothing(link_kb, text):
    assert link_kb.link(text) == []


def test_linking_is_deterministic_across_input_order(link_kb):
    names = [n for n, _ in link_kb.store.iter_entities()]
    aliases = list(link_kb.store.iter_aliases())
    rich = link_kb.store.fact_counts()
    queries = ["二甲双胍", "肝胆管结石", "阿莫西林", "高血鸭", "急性中耳", "胶囊"]
    expected = [link_kb.linker.link(q, k=10) for q in queries]
    for seed in range(3):
        rng = random.Random(seed)
        rng.shuffle(names)
        rng.shuffle(aliases)
        other = EntityLinker(names, aliases, dict(reversed(list(rich.items()))))
        assert [other.link(q, k=10) for q in queries] == expected


def test_k_limits_the_number_of_links(link_kb):
    assert len(link_kb.link("阿莫西林", k=1)) == 1
    assert len(link_kb.link("阿莫西林", k=5)) == 2  # 阿莫西林胶囊 and 阿莫西林颗粒


def test_link_json_has_the_contract_fields(link_kb):
    assert link_kb.link("偏头疼")[0].to_json() == {
        "entity": "偏头痛", "score": 0.95, "method": "alias:别称", "surface": "偏头疼"
    }


def test_find_mentions_returns_longest_surfaces_left_to_right(link_kb):
    text = "儿童急性中耳炎可以吃阿莫仙吗"
    spans = link_kb.linker.find_mentions(text)
    assert [s for _, _, s in spans] == ["儿童急性中耳炎", "阿莫仙"]
    assert all(normalize(text)[i:j] == s for i, j, s in spans)


@pytest.mark.parametrize(
    "text,expected", [("尿素维Ｅ乳膏", "尿素维e乳膏"), ("Ａ Ｂ-c", "abc"), ("偏头痛。", "偏头痛"), ("维生素B₁₂", "维生素b12")]
)
def test_normalize_folds_width_case_spaces_and_light_punctuation(text, expected):
    assert normalize(text) == expected


def test_text_longer_than_any_reachable_surface_skips_pinyin_and_fuzzy(link_kb, monkeypatch):
    linker = link_kb.linker
    link_kb.link("偏头通")  # build the lazy indexes
    calls = []
    monkeypatch.setattr(linker, "_fuzzy", lambda *a: calls.append("fuzzy"))
    monkeypatch.setattr(linker, "_pinyin_match", lambda *a: calls.append("pinyin"))
    assert link_kb.link("偏头痛发作" * 200) == [] and calls == []
    link_kb.link("偏头痛加重")
    assert calls == ["pinyin", "fuzzy"]


@pytest.mark.parametrize(
    "text,entity,method",
    [
        ("轻度偏头痛", "偏头痛", "modifier"),  # severity word before a KB name
        ("偏头痛患者", "偏头痛", "modifier"),
        ("反复发作的偏头痛", "偏头痛", "modifier"),
        ("肝胆管结石症", "肝胆管结石病", "variant"),  # another disease suffix
    ],
)
def test_modifiers_and_suffix_variants_reach_the_kb_name(link_kb, text, entity, method):
    assert top(link_kb, text) == (entity, method)


def test_a_modifier_never_hides_a_kb_name_that_contains_it(link_kb):
    # 儿童急性中耳炎 is its own entry: the exact tier wins over stripping 儿童
    assert top(link_kb, "儿童急性中耳炎") == ("儿童急性中耳炎", "exact")


def test_lay_names_link_only_to_entities_the_kb_has(tmp_path):
    from ktune.kb.linker import lay_name_aliases

    lay = tmp_path / "lay.json"
    lay.write_text('{"names": {"偏头疼病": "偏头痛", "心梗": "心肌梗死", "头风": "偏头痛"}}', encoding="utf-8")
    rows = lay_name_aliases(lay, {"偏头痛"}, taken={"头风"})
    assert rows == [("偏头疼病", "偏头痛", "lay_name")]  # no target 心肌梗死; 头风 already a KB surface


def test_strip_modifiers_keeps_words_that_name_a_body_part():
    from ktune.kb.variants import strip_modifiers

    assert strip_modifiers("上腹痛") == "上腹痛"
    assert strip_modifiers("小儿轻度湿疹") == "湿疹"
    assert strip_modifiers("孕妇") == "孕妇"  # nothing left to be a name: unchanged


def test_a_drug_written_as_kou_fu_ye_links_to_its_kou_fu_rong_ye_entry_and_an_exact_name_still_wins(tmp_path):
    from tests.conftest import kb_from_records

    rows = [{"中心词": "复方甘草口服溶液", "不良反应": ["恶心"], "商品名": ["复方甘草合剂"]},
            {"中心词": "复方甘草合剂", "不良反应": ["呕吐"], "通用名": ["复方甘草口服溶液"]},
            {"中心词": "氨溴特罗口服溶液", "规格": ["60ml"]}, {"中心词": "氨溴特罗口服液", "规格": ["100ml"]}]
    kb = kb_from_records(tmp_path, rows)
    try:
        # the entry named so first; the product that lists the name as its 通用名 comes after it
        assert [(lk.entity, lk.method) for lk in kb.link("复方甘草口服液")][:2] == [
            ("复方甘草口服溶液", "variant"), ("复方甘草合剂", "variant")]
        assert top(kb, "氨溴特罗口服液") == ("氨溴特罗口服液", "exact")
    finally:
        kb.close()


def test_variant_mentions_are_windows_that_read_as_a_kb_name_under_the_variant_key():
    linker = EntityLinker(["牙痛", "肺炎", "带状疱疹感染"], [], {})
    assert (0, 2, "牙疼") in linker.variant_mentions("牙疼吃什么药")  # 疼 written for 痛
    assert (0, 4, "带状疱疹") in linker.variant_mentions("带状疱疹后遗症")  # 感染 left out
    assert all(w != "肺炎" for _, _, w in linker.variant_mentions("肺炎怎么治"))  # a KB name is an exact mention
    assert linker.variant_mentions("乳腺结节怎么办") == []


def test_a_name_typed_with_fuzzy_pinyin_reads_as_the_kb_name_when_no_exact_homophone_exists():
    """库兴 for 库欣 (xing / xin), 帕金生 for 帕金森 (sheng / sen): an input method's 模糊音; an exact homophone
    wins, and two names that read alike under fuzzy pinyin give no guess."""
    linker = EntityLinker(["库欣综合征", "帕金森病", "高血压", "脑血栓", "脑血栓形成"], [], {})
    assert linker.homophone_of("库兴综合征") == "库欣综合征"
    assert linker.homophone_of("帕金生病") == "帕金森病"  # sheng -> seng -> sen
    assert linker.homophone_mentions("我妈库兴综合征怎么治") == [(2, 7, "库欣综合征")]
    assert linker.homophone_of("高血呀") == "高血压"  # exact homophone, as before
    assert linker.homophone_of("库兴病") is None  # reads like no KB name
    assert [lk.entity for lk in linker.link("库兴综合征")] == ["库欣综合征"]
    assert EntityLinker(["山楂丸"], [], {}).homophone_of("三渣丸") == "山楂丸"  # san za = shan zha
    assert EntityLinker(["山楂丸", "山扎丸"], [], {}).homophone_of("三渣丸") is None


def test_a_lay_name_that_reads_like_its_own_entry_does_not_make_a_homophone_ambiguous():
    """寻麻疹 (a lay-name miswriting of 荨麻疹) and 荨麻疹 read alike: 荨麻诊 is still 荨麻疹, not "two names, no guess";
    two different entries that read alike still give none."""
    linker = EntityLinker(["荨麻疹", "荨麻疹丸", "高血压", "高血鸭"],
                          [("寻麻疹", "荨麻疹", "lay_name"), ("荨麻疹", "荨麻疹丸", "derived:generic")], {})
    assert linker.homophone_of("荨麻诊") == "荨麻疹"
    assert linker.homophone_mentions("荨麻诊的症状") == [(0, 3, "荨麻疹")]
    assert linker.homophone_of("高血呀") is None  # 高血压 and 高血鸭: two entries read alike
