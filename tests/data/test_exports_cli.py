"""Exports load with `datasets`; `ktune data build --json` runs end to end."""

import json

import pytest

from ktune.cli.main import main
from ktune.prompt import PromptFormat

from .conftest import FIXTURE, read_jsonl


def test_trl_exports_load_with_datasets_and_match_the_prompt_format(built):
    datasets = pytest.importorskip("datasets")
    out, report = built
    fmt = PromptFormat()
    for step in ("query", "answer", "instruction"):
        ds = datasets.load_dataset(
            "json", data_files=str(out / "exports" / "trl" / f"{step}_train.jsonl"), split="train"
        )
        assert ds.column_names == ["prompt", "completion"] and len(ds) == report["counts"]["train"]
    train = read_jsonl(out / "train.jsonl")
    query = read_jsonl(out / "exports" / "trl" / "query_train.jsonl")
    for rec, ex in zip(train, query, strict=True):
        assert ex["prompt"] == fmt.query_prompt(rec["question"])
        assert ex["completion"] == fmt.query_target(rec["entity"], rec["attribute"])
        if rec["entity"] is None:
            assert ex["completion"] == fmt.no_query + fmt.stop


def test_llamafactory_export_has_alpaca_files_named_in_dataset_info(built):
    datasets = pytest.importorskip("datasets")
    out, _ = built
    folder = out / "exports" / "llamafactory"
    info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
    assert "ktune_query_train" in info and "ktune_answer_test_unseen" in info
    for name, entry in info.items():
        assert (folder / entry["file_name"]).is_file(), name
    ds = datasets.load_dataset(
        "json", data_files=str(folder / info["ktune_answer_dev"]["file_name"]), split="train"
    )
    assert set(ds.column_names) == {"instruction", "input", "output"}
    assert all("\n知识：" in x for x in ds["instruction"])


def test_cli_data_build_json_end_to_end(tmp_path, capsys):
    from ktune.kb import KnowledgeBase

    kb_path = tmp_path / "kb.sqlite"
    with KnowledgeBase.open(kb_path, create=True) as kb:
        kb.import_file(FIXTURE)
    out = tmp_path / "data"
    code = main(
        [
            "data",
            "build",
            "--kb",
            str(kb_path),
            "--out",
            str(out),
            "--size",
            "100",
            "--seed",
            "3",
            "--no-exports",
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["ok"]
    assert result["counts"]["train"] == 100 and result["counts"]["dev"] == 10
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["seed"] == 3


def test_cli_refuses_a_tiny_size_with_one_line(tmp_path, capsys):
    code = main(
        ["data", "build", "--kb", str(tmp_path / "none.sqlite"), "--out", str(tmp_path), "--size", "3"]
    )
    assert code == 2 and "--size 3" in capsys.readouterr().err
