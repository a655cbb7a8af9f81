"""The dataset folder as typed records: DatasetRecord <-> the JSONL line, Dataset.load / records / manifest."""

import json

import pytest

from ktune.data.dataset import SPLITS, Dataset, DatasetRecord
from ktune.errors import ConfigError

from .conftest import read_jsonl


def test_a_loaded_record_writes_back_the_line_it_was_read_from(built):
    out, report = built
    dataset = Dataset.load(out)
    assert dataset.version == report["data_version"] and dataset.manifest["counts"] == report["counts"]
    for split in SPLITS:
        records = dataset.records(split)
        assert [r.to_json() for r in records] == read_jsonl(out / f"{split}.jsonl")
        assert {r.split for r in records} == {split}


def test_a_subset_is_the_nested_few_shot_file_when_there_is_one(built):
    out, _ = built
    dataset = Dataset.load(out)
    assert dataset.fewshot_sizes() == [50, 100, 200]
    assert [r.to_json() for r in dataset.records("train", 50)] == read_jsonl(out / "fewshot" / "train_50.jsonl")
    assert dataset.records("train", 7) == dataset.records("train")[:7]
    assert dataset.records("dev", limit=3) == dataset.records("dev")[:3]


def test_a_hand_written_record_needs_only_a_question():
    rec = DatasetRecord.from_json({"question": "感冒怎么办", "entity": "感冒", "knowledge": {"感冒": {"治疗": ["休息"]}}})
    assert (rec.kind, rec.id, rec.answer, rec.attribute) == ("in_kb", "", "", None)
    assert DatasetRecord.from_json({"question": "x"}, "dev").kind == "no_knowledge"
    with pytest.raises(ConfigError, match="question"):
        DatasetRecord.from_json({"entity": "感冒"})


def test_a_missing_folder_split_or_unreadable_manifest_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="ktune data build --out"):
        Dataset.load(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    assert Dataset.load(tmp_path / "d").manifest == {}
    with pytest.raises(ConfigError, match="dev.jsonl is missing"):
        Dataset.load(tmp_path / "d").records("dev")
    (tmp_path / "d" / "dev.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no records"):
        Dataset.load(tmp_path / "d").records("dev")
    assert Dataset.load(tmp_path / "d").records("dev", empty_ok=True) == []
    (tmp_path / "d" / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="manifest.json is not readable JSON"):
        Dataset.load(tmp_path / "d")
    Dataset.save_manifest(tmp_path / "d", {"data_version": "v1"})
    assert json.loads((tmp_path / "d" / "manifest.json").read_text(encoding="utf-8")) == {"data_version": "v1"}
