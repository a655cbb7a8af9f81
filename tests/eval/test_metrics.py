"""Metric functions on hand-made cases, including the CI edge cases."""

import pytest

from ktune.eval.metrics import (
    bootstrap_mean,
    cohen_kappa,
    fmt_prop,
    knowledge_recall,
    knowledge_recall_listed,
    krippendorff_alpha,
    proportion,
    refusal_scores,
    unsupported_claims,
    wilson,
)


def test_wilson_with_no_items_is_the_whole_interval():
    assert wilson(0, 0) == (0.0, 1.0)
    assert proportion(0, 0)["value"] is None
    assert fmt_prop(proportion(0, 0)) == "– (n=0)"


def test_wilson_all_correct_reaches_one_but_not_zero():
    lo, hi = wilson(20, 20)
    assert hi == pytest.approx(1.0)
    assert 0.8 < lo < 0.9  # 20/20: 83.9%


def test_wilson_none_correct_starts_at_zero():
    lo, hi = wilson(0, 20)
    assert lo == pytest.approx(0.0)
    assert 0.1 < hi < 0.2


def test_wilson_matches_the_textbook_value():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3)
    assert hi == pytest.approx(0.9433, abs=1e-3)


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="k=3, n=2"):
        wilson(3, 2)


def test_refusal_precision_and_recall_count_the_right_cells():
    should = [True, True, False, False, True]
    did = [True, False, True, False, True]
    r = refusal_scores(should, did)
    assert (r["precision"]["k"], r["precision"]["n"]) == (2, 3)
    assert (r["recall"]["k"], r["recall"]["n"]) == (2, 3)


def test_refusal_scores_without_refusals_have_no_precision():
    r = refusal_scores([False, False], [False, False])
    assert r["precision"]["value"] is None and r["recall"]["value"] is None


def test_knowledge_recall_is_the_share_of_values_stated():
    know = {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药", "阿莫西林"]}}
    assert knowledge_recall("可以用阿莫西林或头孢菌素。", know) == pytest.approx(2 / 3)
    assert knowledge_recall("任何回答", {}) is None


def test_listed_recall_counts_a_long_field_complete_once_the_cap_of_its_values_is_stated():
    drugs = [f"药{i}号" for i in range(1, 31)]
    know = {"结肠炎": {"相关药物": drugs}, "肠炎": {"病因": ["感染", "饮食"]}}
    listing = "、".join(drugs[:10]) + "等，共30项。病因有感染。"
    assert knowledge_recall(listing, know) == pytest.approx(11 / 32)  # every value counts
    assert knowledge_recall_listed(listing, know, 10) == pytest.approx(11 / 12)  # 10 of a capped 10, 1 of 2
    assert knowledge_recall_listed("、".join(drugs[:5]), know, 10) == pytest.approx(5 / 12)
    assert knowledge_recall_listed("任何回答", {}, 10) is None


def test_unsupported_claims_are_kb_names_outside_the_knowledge_used():
    surfaces = {"利福平", "阿莫西林", "肝胆管结石病", "黄疸"}
    know = {"肝胆管结石病": {"常见症状": ["腹痛", "黄疸"]}}
    assert unsupported_claims("肝胆管结石病可用利福平治疗，常见黄疸。", know, surfaces) == ["利福平"]
    assert unsupported_claims("常见黄疸。", know, surfaces) == []


def test_a_term_from_the_question_is_not_support_for_a_claim():
    # the motivating example: the question states the premise, the knowledge does not contain it
    surfaces = {"利福平", "利福平片", "肝胆管结石病", "结核病"}
    know = {"利福平片": {"适应症": ["结核病", "麻风"]}}
    answer = "根据知识库，利福平片可用于治疗肝胆管结石病。"
    assert unsupported_claims(answer, know, surfaces) == ["肝胆管结石病"]


def test_a_sentence_saying_the_kb_does_not_list_a_term_claims_nothing():
    surfaces = {"利福平片", "肝胆管结石病"}
    know = {"利福平片": {"适应症": ["结核病"]}}
    assert unsupported_claims("知识库中利福平片的适应症没有列出“肝胆管结石病”。", know, surfaces) == []


def test_aliases_of_the_knowledges_entity_are_support():
    know = {"阿莫西林胶囊": {"适应症": ["中耳炎"]}}
    assert unsupported_claims("阿莫仙可用于中耳炎。", know, {"阿莫仙", "中耳炎"}, names=["阿莫仙"]) == []
    assert unsupported_claims("阿莫仙可用于中耳炎。", know, {"阿莫仙", "中耳炎"}) == ["阿莫仙"]


def test_cohen_kappa_is_one_for_identical_raters_and_zero_for_chance():
    assert cohen_kappa([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert cohen_kappa([1, 1, 2, 2], [1, 2, 1, 2]) == pytest.approx(0.0)
    assert cohen_kappa([1, 2, 3, 5], [1, 2, 4, 5], "quadratic") > cohen_kappa([1, 2, 3, 5], [1, 2, 4, 5])
    assert cohen_kappa([], []) is None


def test_krippendorff_alpha_perfect_agreement_and_missing_values():
    assert krippendorff_alpha([[1, 2, 3, None], [1, 2, 3, 4]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[1, None], [None, 2]]) is None
    # a textbook-style case: disagreement lowers alpha below 1
    assert krippendorff_alpha([[1, 2, 3, 3], [1, 2, 3, 1]]) < 0.9


def test_bootstrap_mean_of_constant_values_has_a_point_interval():
    m = bootstrap_mean([4, 4, 4])
    assert m["mean"] == 4 and m["ci95"] == [4.0, 4.0]
    assert bootstrap_mean([])["mean"] is None
    lo, hi = bootstrap_mean([1, 5, 3, 2, 4])["ci95"]
    assert lo < 3 < hi
