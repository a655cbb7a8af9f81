"""Stage-1 resolution without a model: the longest KB mention in the question, and which free queries miss."""

import json

import pytest

from ktune.pipeline import PipelineConfig
from ktune.pipeline.query import Query, QueryStage
from ktune.prompt import PromptFormat

RECORDS = [
    {"中心词": "丝瓜", "功效": ["清热化痰"], "性味": ["甘", "凉"]},
    {"中心词": "丝瓜皮", "入药部位": ["果皮"], "功效": ["清热解毒"]},
    {"中心词": "系统性红斑狼疮", "常见症状": ["蝶形红斑"], "就诊科室": ["风湿免疫科"]},
    {"中心词": "系统性红斑狼疮所致脊髓病", "检查": ["脊髓MRI"], "别称": ["狼疮脊髓病"]},
    {"中心词": "阿司匹林肠溶片", "不良反应": ["胃肠道反应"], "适应症": ["解热镇痛"], "成份": ["阿司匹林"]},
    {"中心词": "痔", "常见症状": ["便血"], "就诊科室": ["肛肠科"]},
    {"中心词": "痔疮片", "通用名": ["痔疮片"], "适应症": ["痔疮"], "不良反应": ["尚不明确"]},
]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    from ktune.kb import KnowledgeBase

    root = tmp_path_factory.mktemp("resolution")
    src = root / "kb.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS), "utf-8")
    kb = KnowledgeBase.open(root / "kb.sqlite", create=True)
    kb.import_file(src)
    yield QueryStage(None, kb, PromptFormat(), PipelineConfig())
    kb.close()


def test_an_entity_written_inside_a_longer_kb_name_in_the_question_becomes_the_longer_one(stage):
    q = stage.extend_to_mention("丝瓜皮药用部位", Query("丝瓜", "入药部位", "丝瓜", 1.0, "exact", "丝瓜|入药部位"))
    assert (q.entity, q.linked_entity, q.attribute) == ("丝瓜皮", "丝瓜皮", "入药部位")
    assert q.link_method.startswith("longest_mention") and q.raw == "丝瓜|入药部位"
    q = stage.extend_to_mention("系统性红斑狼疮所致脊髓病需要做哪些检查？",
                                Query("系统性红斑狼疮", "检查", "系统性红斑狼疮", 1.0, "exact"))
    assert q.linked_entity == "系统性红斑狼疮所致脊髓病"


def test_a_part_of_a_kb_name_written_in_the_question_becomes_that_name_even_when_it_links_nowhere(stage):
    q = stage.extend_to_mention("系统性红斑狼疮所致脊髓病的检查", Query("红斑狼疮所致", "检查", None, raw="红斑狼疮所致|检查"))
    assert (q.linked_entity, q.attribute) == ("系统性红斑狼疮所致脊髓病", "检查")


def test_the_longest_mention_must_be_a_kb_name_or_alias_not_a_derived_generic_name(stage):
    q = Query("痔", "临床表现", "痔", 1.0, "exact")
    generic_only = [lk for lk in stage.kb.link("痔疮", k=20) if lk.method == "generic"]
    assert generic_only and all(lk.entity != "痔" for lk in generic_only)  # 痔疮 derives products (痔疮片, ...)
    assert stage.extend_to_mention("痔疮有什么症状", q).linked_entity == "痔"  # never the product


def test_the_longest_mention_keeps_queries_it_does_not_contain_and_refusals(stage):
    plain = Query("丝瓜", "功效", "丝瓜", 1.0, "exact")
    assert stage.extend_to_mention("丝瓜有什么功效？", plain) == plain
    assert stage.extend_to_mention("丝瓜皮能吃吗", Query("冬瓜", "功效", None)) == Query("冬瓜", "功效", None)
    assert stage.extend_to_mention("冬瓜皮能吃吗", Query("瓜皮", "功效", None)) == Query("瓜皮", "功效", None)
    nothing = Query(None, None, None, link_method="no_query")
    assert stage.extend_to_mention("丝瓜皮药用部位", nothing) == nothing


def test_the_longest_mention_keeps_the_attribute_so_a_missing_field_is_refused_not_swapped(stage):
    q = stage.extend_to_mention("丝瓜皮性味如何", Query("丝瓜", "性味", "丝瓜", 1.0, "exact"))
    assert q.linked_entity == "丝瓜皮" and q.attribute == "性味"
    assert "性味" not in stage.kb.attributes_of("丝瓜皮")


def test_a_free_query_misses_on_an_attribute_its_entitys_kind_never_has(stage):
    assert stage._misses(Query("阿司匹林肠溶片", "毒性", "阿司匹林肠溶片", 1.0, "exact"))  # a herb field of a drug
    assert not stage._misses(Query("阿司匹林肠溶片", "禁忌", "阿司匹林肠溶片", 1.0, "exact"))  # a drug field it lacks
    assert not stage._misses(Query("阿司匹林肠溶片", "不良反应", "阿司匹林肠溶片", 1.0, "exact"))
    assert stage._misses(Query("阿斯匹林", "不良反应", "阿司匹林肠溶片", 0.8, "fuzzy"))
    assert not stage._misses(Query(None, None, None, link_method="no_query"))


@pytest.mark.parametrize(
    "question,entity",
    [
        ("我妈有系统性红斑狼疮，平时要注意啥", "系统性红斑狼疮"),  # a frame character before the name
        ("系统性红斑狼疮老是反复发作怎么办", "系统性红斑狼疮"),
        ("得了狼疮脊髓病怎么办", "狼疮脊髓病"),  # by its alias (linked later, with the attribute)
        ("阿司匹林有什么副作用", "阿司匹林"),  # a generic drug name: the product is picked with the attribute
        ("丝瓜皮和丝瓜哪个好", None),  # two entries named: no single one to query
        ("肾系统性红斑狼疮怎么办", None),  # 肾 + the name: a longer term the KB lacks
        ("这个病怎么办", None),
    ],
)
def test_a_question_names_a_kb_condition_as_a_standalone_word(stage, question, entity):
    assert stage.named_entity(question) == entity


def test_a_population_word_before_a_name_leads_to_that_populations_entry(tmp_path):
    from ktune.kb.linker import EntityLinker

    linker = EntityLinker(["腹泻", "小儿腹泻", "湿疹"], [("拉肚子", "腹泻", "别称")], {})
    assert linker.population_entry("宝宝", "拉肚子") == "小儿腹泻"
    assert linker.population_entry("宝宝", "湿疹") is None  # the KB has no 小儿湿疹: no such entry
    assert linker.population_entry("轻度", "腹泻") is None  # not a population word
    assert linker.link("孩子腹泻")[0].entity == "小儿腹泻"


def test_the_named_entity_fallback_leaves_queries_that_are_not_no_query(stage):
    q = Query("痔", "临床表现", "痔", 1.0, "exact")
    refused = Query("内痔", "临床表现", None)
    assert stage.named_entity_fallback(["痔有什么症状", "内痔有什么症状"], [q, refused]) == [q, refused]


def test_a_generic_drug_name_asked_a_field_drugs_never_have_is_refused_not_redecoded(stage):
    # 阿司匹林 is only the derived generic name of 阿司匹林肠溶片; 功效 is a herb's field: not that product's question
    q = stage.resolve_free("阿司匹林|功效")
    assert q.linked_entity is None and q.link_method == "generic_other_kind"
    assert not stage._misses(q)
    assert stage.resolve_free("阿司匹林|不良反应").linked_entity == "阿司匹林肠溶片"


@pytest.fixture(scope="module")
def entries(tmp_path_factory):
    """Duplicate entries as CMeKG has them: a thin 脑梗 next to 脑梗死, 帕金森症 next to 帕金森病, a population entry."""
    from ktune.kb import KnowledgeBase

    records = [
        {"中心词": "脑梗", "常见症状": ["偏瘫"], "相关药物": ["阿司匹林"]},
        {"中心词": "脑梗死", "临床症状及体征": ["偏瘫"], "预防": ["控制血压"], "高危因素": ["高血压"]},
        {"中心词": "帕金森症", "常见症状": ["震颤"]},
        {"中心词": "帕金森病", "临床症状及体征": ["震颤"], "病因": ["多巴胺能神经元变性"]},
        {"中心词": "老花眼", "常见症状": ["视近模糊"], "又称": ["老视"]},
        {"中心词": "老视", "常见症状": ["视近模糊"], "治疗": ["配镜"]},
        {"中心词": "肝", "功效": ["补肝"]},
        {"中心词": "肝癌", "预防": ["接种乙肝疫苗"], "常见症状": ["肝区疼痛"]},
        {"中心词": "肺炎", "常见症状": ["发热"], "药物治疗": ["抗生素"]},
        {"中心词": "小儿肺炎", "常见症状": ["呼吸急促"]},
        {"中心词": "肾结石", "常见症状": ["腰痛"], "治疗": ["体外冲击波碎石"]},
        {"中心词": "便秘", "常见病因": ["膳食纤维不足"]},
        {"中心词": "结节", "常见症状": ["肿块"]},
        {"中心词": "高血压", "就诊科室": ["心内科"]},
        {"中心词": "痛风", "病因": ["尿酸升高"]},
        {"中心词": "痛风石", "病因": ["尿酸盐沉积"]},
        {"中心词": "阿莫西林片", "适应症": ["中耳炎"]},
        {"中心词": "阿莫西林胶囊", "适应症": ["中耳炎"]},
    ]
    root = tmp_path_factory.mktemp("entries")
    src = root / "kb.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    kb = KnowledgeBase.open(root / "kb.sqlite", create=True)
    kb.import_file(src)
    lay = root / "lay.json"
    lay.write_text(json.dumps({"names": {"脑梗": "脑梗死"}}, ensure_ascii=False), "utf-8")
    from ktune.kb.linker import EntityLinker

    kb.derived(kb, "linker", lambda: EntityLinker.from_store(kb.store, lay))  # this KB version's linker: this list
    yield QueryStage(None, kb, PromptFormat(), PipelineConfig())
    kb.close()


@pytest.mark.parametrize(
    "question,query,entity,how",
    [
        ("脑梗怎么预防", ("脑梗", "预防", "脑梗"), "脑梗死", "equivalent:lay_name"),
        ("帕金森症是什么原因引起的", ("帕金森症", "病因", "帕金森症"), "帕金森病", "equivalent:variant"),
        ("老花眼能治吗", ("老花眼", "治疗方案", "老花眼"), "老视", "equivalent:alias"),
        ("小孩肺炎有什么症状", ("肺炎", "临床表现", "肺炎"), "小儿肺炎", "population"),
    ],
)
def test_the_entry_that_answers_is_an_equivalent_or_the_populations_own(entries, question, query, entity, how):
    q = entries.answering_entry(question, Query(*query, 1.0, "exact"))
    assert q.linked_entity == entity and q.link_method == f"exact+{how}"
    assert q.entity == query[0] and q.attribute == query[1]  # what the model generated is kept


@pytest.mark.parametrize(
    "question,query",
    [
        ("脑梗有什么症状", ("脑梗", "临床表现", "脑梗")),  # the entry has the field: kept
        ("肝怎么预防", ("肝", "预防", "肝")),  # 肝癌 contains 肝 but is another entry: never an equivalent
        ("小孩肺炎吃什么药", ("肺炎", "药物治疗", "肺炎")),  # the population entry lacks the field: the general one
        ("老人肾结石怎么治", ("肾结石", "治疗方案", "肾结石")),  # no 老年肾结石 entry
    ],
)
def test_an_entry_that_answers_is_kept(entries, question, query):
    q = Query(*query, 1.0, "exact")
    assert entries.answering_entry(question, q) == q


@pytest.mark.parametrize(
    "question,span,entity",
    [
        ("体检查出左肾结石0.6cm，不疼，需要怎么处理", "左肾结石0.6cm", "肾结石"),
        ("老人八十多了，经常三四天不大便，便秘是什么原因", "八十多，便秘", "便秘"),
        ("乳腺结节怎么办", "乳腺结节", None),  # 乳腺 is content, not a frame: a term the KB lacks stays refused
        ("甲状腺结节严重吗", "甲状腺结节", None),
    ],
)
def test_a_kb_name_framed_by_numbers_sides_or_modifiers_is_queried(entries, question, span, entity):
    q = entries.framed_mention(question, Query(span, "病因", None, raw=f"{span}|病因"))
    assert q.linked_entity == entity
    if entity:
        assert q.attribute == "病因" and q.link_method.startswith("framed:")


def test_a_homophone_typo_of_a_kb_name_is_a_mention(entries):
    assert entries.kb.linker.homophone_mentions("高血呀挂什么科") == [(0, 3, "高血压")]
    assert entries.kb.linker.homophone_mentions("高血压挂什么科") == []  # written right: an exact mention
    assert entries.named_entity("高血呀挂什么科") == "高血压"
    assert entries.named_entity("肝血压挂什么科") is None  # no KB name reads like it


def test_a_generic_name_in_the_question_lets_another_product_answer_a_field_this_one_lacks(tmp_path):
    from ktune.kb import KnowledgeBase

    records = [
        {"中心词": "布洛芬片", "通用名": ["布洛芬"], "不良反应": ["恶心"]},
        {"中心词": "布洛芬缓释胶囊", "通用名": ["布洛芬"], "用法用量": ["一次1粒，一日2次"]},
    ]
    src = tmp_path / "kb.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    kb = KnowledgeBase.open(tmp_path / "kb.sqlite", create=True)
    kb.import_file(src)
    stage = QueryStage(None, kb, PromptFormat(), PipelineConfig())
    q = stage.answering_entry("布洛芬一次吃几粒？", Query("布洛芬片", "用法用量", "布洛芬片", 1.0, "exact"))
    assert q.linked_entity == "布洛芬缓释胶囊" and q.link_method == "exact+generic"
    named = Query("布洛芬片", "用法用量", "布洛芬片", 1.0, "exact")  # the product itself is asked: refused, not swapped
    assert stage.answering_entry("布洛芬片一次吃几片？", named) == named
    kb.close()


def test_a_free_entity_written_with_a_homophone_typo_is_the_kb_name_that_reads_the_same(entries):
    q = entries.resolve_free("高血呀|就诊科室")
    assert (q.entity, q.linked_entity, q.link_method) == ("高血压", "高血压", "homophone")
    assert q.raw == "高血呀|就诊科室"  # what the model wrote is kept


def test_a_typo_mention_covering_an_exact_name_wins_unless_it_only_adds_a_frame_character(entries):
    assert [m[2] for m in entries.mentions("肾结拾怎么办")] == ["肾结石"]
    assert [m[2] for m in entries.mentions("阿莫西林交囊能治什么")] == ["阿莫西林胶囊"]
    assert [m[2] for m in entries.mentions("痛风是什么原因引起的")] == ["痛风"]  # 痛风是 reads like 痛风石


def test_a_name_the_kb_has_only_for_a_population_is_that_entry(entries):
    q = entries.answering_entry("小孩肺炎有什么症状", Query("肺炎", "临床表现", None, raw="肺炎|临床表现"))
    assert q.linked_entity == "小儿肺炎" and q.link_method == "population"


def test_a_name_the_model_shortened_is_the_name_the_question_writes(entries):
    q = entries.framed_mention("便秘了怎么办", Query("便", "治疗方案", None, raw="便|治疗方案"))
    assert q.linked_entity is None  # one character is no name
    q = entries.framed_mention("肾结石怎么办", Query("肾石", "治疗方案", None, raw="肾石|治疗方案"))
    assert q.linked_entity == "肾结石" and q.link_method.startswith("framed:")


def test_a_name_followed_by_the_askeds_cue_word_is_that_name_with_the_attribute_read_again_when_it_is_anothers(entries):
    q = entries.framed_mention("脑梗后遗症有哪些", Query("脑梗后遗症", "并发症", None, raw="脑梗后遗症|并发症"))
    assert q.linked_entity == "脑梗" and q.attribute == "并发症" and q.link_method.startswith("framed:")

    class Rereads(QueryStage):  # the model's attribute after the name, when the kept one is another kind's field
        def free_attributes(self, questions, entities):
            return [("临床表现", f"{e}|临床表现") for e in entities]

    stage = Rereads(None, entries.kb, PromptFormat(), PipelineConfig())
    q = stage.framed_mention("脑梗前兆有哪些", Query("脑梗前兆", "相关症状", None, raw="脑梗前兆|相关症状"))
    assert (q.linked_entity, q.attribute, q.raw) == ("脑梗", "临床表现", "脑梗|临床表现")
    # content after the name is no cue: a term the KB lacks stays refused
    assert entries.framed_mention("脑梗塞指数高吗", Query("脑梗塞指数", "病因", None)).linked_entity is None


def test_a_product_with_the_asked_field_itself_answers_before_this_ones_fallback_field(tmp_path):
    from tests.conftest import kb_from_records

    kb = kb_from_records(tmp_path, [
        {"中心词": "布洛芬片", "通用名": ["布洛芬"], "注意事项": ["饭后服用"]},
        {"中心词": "布洛芬颗粒", "通用名": ["布洛芬"], "禁忌": ["对本品过敏者禁用"]},
    ])
    stage = QueryStage(None, kb, PromptFormat(), PipelineConfig())
    q = stage.answering_entry("布洛芬有哪些禁忌", Query("布洛芬片", "禁忌", "布洛芬片", 1.0, "exact"))
    assert q.linked_entity == "布洛芬颗粒" and q.link_method == "exact+generic"
    # asked of the product itself, its own 注意事项 (the intent's fallback) answers: kept
    named = Query("布洛芬片", "禁忌", "布洛芬片", 1.0, "exact")
    assert stage.answering_entry("布洛芬片有哪些禁忌", named) == named
    kb.close()


@pytest.mark.parametrize(
    "question,span,attribute,entity",
    [
        ("我妈去年脑梗过一次，怎么预防脑梗再次发作", "脑梗过", "预防", "脑梗"),  # a verb glued to the name
        ("孕妇可吃阿莫西林片吗", "孕妇可吃阿莫西林片", "适应症", "阿莫西林片"),
        ("肺炎阳性要紧吗", "肺炎阳性", "病因", "肺炎"),  # a test result names the condition tested for
        ("最近又长肾结石了怎么办", "长肾结石", "治疗方案", "肾结石"),
        ("查肾结石做什么检查", "查肾结石", "检查", "肾结石"),
        ("乳腺结节吃了会怎样", "乳腺结节吃了", "病因", None),  # still content (乳腺) next to the name: refused
    ],
)
def test_verbs_and_test_results_glued_to_a_kb_name_only_frame_it(entries, question, span, attribute, entity):
    q = entries.framed_mention(question, Query(span, attribute, None, raw=f"{span}|{attribute}"))
    assert (q.linked_entity, q.attribute if entity else attribute) == (entity, attribute)


def test_a_variant_of_a_kb_name_written_as_a_word_of_the_question_is_a_mention(entries):
    # 帕金森 is 帕金森病 / 帕金森症 without the suffix (the linker's variant tier): a mention when jieba reads it
    # as a word, not when it only cuts a longer word (肺炎症 of 肺炎症状 reads 肺炎 + 症状)
    assert (2, 5, "帕金森") in entries.mentions("我爸帕金森吃什么药")
    assert entries.mentions("肺炎症状有哪些") == [(0, 2, "肺炎")]
    q = entries.framed_mention("我爸帕金森后遗症有哪些", Query("帕金森后遗症", "病因", None, raw="帕金森后遗症|病因"))
    assert q.linked_entity in ("帕金森病", "帕金森症") and q.link_method == "framed:variant"
    assert q.entity == q.linked_entity  # the query names the KB key the variant rule reached, not 帕金森
