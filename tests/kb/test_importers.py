"""Importers: every supported format reads the same KB; every malformed file names file:line and changes nothing."""

import pytest

from ktune.errors import ImportFormatError
from ktune.kb import KnowledgeBase
from tests.conftest import FIXTURES

SAME = ["kb_same.json", "kb_same.jsonl", "kb_same_triples.jsonl", "kb_same.csv"]
EXPECTED = {
    "急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素"], "就诊科室": ["耳鼻咽喉科"]},
    "阿莫西林胶囊": {"不良反应": ["腹泻", "皮疹"], "商品名": ["阿莫仙"], "成份": ["阿莫西林"]},
}


def _fresh(tmp_path, name="k.sqlite") -> KnowledgeBase:
    return KnowledgeBase.open(tmp_path / name, create=True)


def _snapshot(kb: KnowledgeBase):
    return kb.version, kb.store.counts(), list(kb.export()), list(kb.store.iter_aliases())


@pytest.mark.parametrize("name", SAME)
def test_each_format_imports_the_same_facts(tmp_path, name):
    with _fresh(tmp_path) as kb:
        report = kb.import_file(FIXTURES / name)
        assert {e: kb.get(e) for e in EXPECTED} == EXPECTED
        assert report.entities_after == 2 and report.facts_written == 7


def test_all_formats_give_the_same_version_hash(tmp_path):
    versions = set()
    for i, name in enumerate(SAME):
        with _fresh(tmp_path, f"k{i}.sqlite") as kb:
            kb.import_file(FIXTURES / name)
            versions.add(kb.version)
    assert len(versions) == 1 and versions != {"empty"}


def test_explicit_format_overrides_the_file_suffix(tmp_path):
    src = tmp_path / "triples.txt"
    src.write_text((FIXTURES / "kb_same_triples.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    with _fresh(tmp_path) as kb:
        kb.import_file(src, fmt="triples")
        assert kb.get("急性中耳炎") == EXPECTED["急性中耳炎"]


def test_utf8_bom_and_crlf_line_endings_are_accepted(tmp_path):
    src = tmp_path / "bom.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + (FIXTURES / "kb_same.jsonl").read_bytes().replace(b"\n", b"\r\n"))
    with _fresh(tmp_path) as kb:
        kb.import_file(src)
        assert kb.get("阿莫西林胶囊") == EXPECTED["阿莫西林胶囊"]


GOOD = '{"中心词": "偏头痛", "常见症状": ["头痛"]}\n'
# (file name, content, expected line, reason fragment)
MALFORMED = [
    ("bad_json.jsonl", GOOD * 2 + '{"中心词": "x", "常见症状": [\n' + GOOD, 3, "invalid JSON"),
    ("array_elem.json", '[\n {"中心词": "a", "病因": ["b"]},\n {"中心词": "c",, "病因": []}\n]', 3, "invalid JSON"),
    ("array_type.json", '[\n {"中心词": "a", "病因": ["b"]},\n\n "just a string"\n]', 4, "expected a JSON object"),
    ("array_open.json", '[\n {"中心词": "a", "病因": ["b"]},\n', 3, "unterminated JSON array"),
    ("no_column.csv", "head,relation\n偏头痛,常见症状\n", 1, "header must name the columns"),
    ("short_row.csv", "head,relation,tail\n偏头痛,常见症状,头痛\n偏头痛,就诊科室\n", 3, "expected 3 columns, got 2"),
    ("empty_head.csv", "head,relation,tail\n偏头痛,常见症状,头痛\n\n ,就诊科室,神经内科\n", 4, "empty or non-string entity"),
    ("empty_entity.jsonl", GOOD + '{"中心词": "  ", "常见症状": ["头痛"]}\n', 2, "empty or non-string entity"),
    ("no_entity.jsonl", GOOD + GOOD + '{"常见症状": ["头痛"]}\n', 3, "missing entity name"),
    ("dict_value.jsonl", GOOD + '{"中心词": "a", "常见症状": {"x": 1}}\n', 2, "must be a string or a list"),
    ("bool_value.jsonl", '{"中心词": "a", "常见症状": true}\n', 1, "must be a string or a list"),
    ("nested_list.jsonl", GOOD * 3 + '{"中心词": "a", "常见症状": ["x", ["y"]]}\n', 4, "must be a string or a list"),
    ("triple_missing.jsonl", '{"entity": "a", "attribute": "病因", "value": "b"}\n{"entity": "a", "value": "c"}\n', 2,
     "needs the fields"),
    ("triple_empty_attr.jsonl", '{"entity": "a", "attribute": "", "value": "b"}\n', 1, "empty or non-string attribute"),
    ("empty.jsonl", "", 1, "holds no records"),
    ("blank.jsonl", "\n  \n", 1, "holds no records"),
    ("empty_array.json", "[]", 1, "holds no records"),
    ("empty.csv", "", 1, "header must name the columns"),
    ("header_only.csv", "head,relation,tail\n", 1, "holds no triples"),
]


@pytest.mark.parametrize("name,content,line,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_reports_file_line_reason_and_changes_nothing(mini_kb, tmp_path, name, content, line, reason):
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    before = _snapshot(mini_kb)
    with pytest.raises(ImportFormatError) as err:
        mini_kb.import_file(src)
    assert (err.value.path, err.value.line) == (str(src), line)
    assert reason in err.value.reason
    assert str(err.value).startswith(f"{src}:{line}: ")
    assert _snapshot(mini_kb) == before


def test_invalid_utf8_reports_the_line_of_the_bad_byte_and_changes_nothing(mini_kb, tmp_path):
    src = tmp_path / "gbk.jsonl"  # a GBK-encoded line, as Windows tools often save Chinese text
    src.write_bytes(GOOD.encode() * 4 + '{"中心词": "偏头痛"}\n'.encode("gbk") + GOOD.encode())
    before = _snapshot(mini_kb)
    with pytest.raises(ImportFormatError, match=r"gbk\.jsonl:5: not valid UTF-8"):
        mini_kb.import_file(src)
    assert _snapshot(mini_kb) == before


def test_unknown_format_and_missing_file_are_reported(mini_kb, tmp_path):
    with pytest.raises(ImportFormatError, match="choose one of auto, records, triples, csv, cmekg"):
        mini_kb.import_file(FIXTURES / "kb_same.json", fmt="xml")
    with pytest.raises(ImportFormatError, match="no such file"):
        mini_kb.import_file(tmp_path / "missing.jsonl")


def test_a_pickle_with_code_is_refused_without_running_it(mini_kb, tmp_path):
    import os
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    src = tmp_path / "evil.pkl"
    src.write_bytes(pickle.dumps({"偏头痛": {"病因": [Boom()]}}))
    before = _snapshot(mini_kb)
    with pytest.raises(ImportFormatError, match="refusing to load"):
        mini_kb.import_file(src)
    assert not (tmp_path / "pwned").exists()
    assert _snapshot(mini_kb) == before


def test_a_plain_data_pickle_imports_like_cmekg(tmp_path):
    import pickle

    src = tmp_path / "mini.pkl"
    src.write_bytes(pickle.dumps({e: dict(facts) for e, facts in EXPECTED.items()}))
    with _fresh(tmp_path) as kb:
        kb.import_file(src)
        assert {e: kb.get(e) for e in EXPECTED} == EXPECTED
