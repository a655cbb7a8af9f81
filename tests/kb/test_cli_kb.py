"""`ktune kb ...` end to end through a subprocess on the fixture KB, every command with --json parsed."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES

# The real `ktune` entry point (main(): argument parsing, error -> one line, exit codes), with the
# parser built from the kb module only, so each call does not pay for other stages' imports.
KB_ONLY = "import sys, ktune.cli.main as m; m.COMMANDS = {'kb': 'kb'}; sys.exit(m.main(sys.argv[1:]))"


def ktune(*args, check=True, full=False):
    cmd = [sys.executable, "-m", "ktune"] if full else [sys.executable, "-c", KB_ONLY]
    res = subprocess.run([*cmd, *args], capture_output=True, text=True, env=os.environ.copy())
    if check:
        assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def cli_kb(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "kb.sqlite"
    res = ktune("kb", "import", str(FIXTURES / "mini_kb.jsonl"), "--kb", str(path), "--json")
    report = json.loads(res.stdout)
    assert report["entities_after"] == 10 and report["version_after"] != "empty"
    return path


def kbj(cli_kb, *args):
    return json.loads(ktune("kb", *args, "--kb", str(cli_kb), "--json").stdout)


def test_import_json_report_counts_cleaning(tmp_path):
    res = ktune("kb", "import", str(FIXTURES / "mini_kb.jsonl"), "--kb", str(tmp_path / "k.sqlite"), "--json")
    report = json.loads(res.stdout)
    assert report["records"] == 10 and report["cleaning"]["markup_removed"] == 1
    assert report["mode"] == "upsert" and report["entities_before"] == 0


def test_stats_json(cli_kb):
    stats = kbj(cli_kb, "stats")
    assert stats["entities"] == 10 and stats["kinds"]["drug"] == 4
    assert stats["unmapped_predicates_20plus"] == [] and len(stats["version"]) == 16


def test_get_entity_and_entity_attribute(cli_kb):
    whole = kbj(cli_kb, "get", "偏头痛")
    assert whole["knowledge"]["偏头痛"]["就诊科室"] == ["神经内科"]
    one = kbj(cli_kb, "get", "急性中耳炎", "药物治疗")
    assert one["knowledge"] == {"急性中耳炎": {"药物治疗": ["阿莫西林", "头孢菌素", "镇痛药"], "相关药物": ["阿莫西林胶囊"]}}
    assert one["kb_version"] == whole["kb_version"]
    assert kbj(cli_kb, "get", "偏头痛", "并发症")["knowledge"] == {}


def test_get_text_output_and_miss_exit_code(cli_kb):
    res = ktune("kb", "get", "偏头痛", "就诊科室", "--kb", str(cli_kb))
    assert res.stdout.strip() == "就诊科室: 神经内科"
    miss = ktune("kb", "get", "不存在的病", "--kb", str(cli_kb), check=False)
    assert miss.returncode == 1 and "ktune kb link" in miss.stdout


def test_link_json(cli_kb):
    links = kbj(cli_kb, "link", "二甲双胍")
    assert links[0] == {"entity": "盐酸二甲双胍片", "score": 0.9, "method": "generic", "surface": "二甲双胍"}
    assert kbj(cli_kb, "link", "量子计算机") == []


def test_attributes_json(cli_kb):
    schema = kbj(cli_kb, "attributes")
    assert len(schema["attributes"]) == 33 and "相关药物" in schema["attributes"]["药物治疗"]["predicates"]


def test_export_to_file_then_import_round_trips(cli_kb, tmp_path):
    out = tmp_path / "sub" / "export.jsonl"
    summary = kbj(cli_kb, "export", "-o", str(out))
    assert summary["records"] == 10 and out.exists() and not list(out.parent.glob(".*tmp*"))
    fresh = tmp_path / "fresh.sqlite"
    report = json.loads(ktune("kb", "import", str(out), "--kb", str(fresh), "--json").stdout)
    assert report["version_after"] == summary["version"]


def test_export_to_stdout_is_jsonl(cli_kb):
    lines = ktune("kb", "export", "--kb", str(cli_kb)).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 10 and all("中心词" in r for r in records)


def test_delete_json(tmp_path):
    path = str(tmp_path / "k.sqlite")
    ktune("kb", "import", str(FIXTURES / "mini_kb.jsonl"), "--kb", path, "--json")
    report = json.loads(ktune("kb", "delete", "偏头痛", "别称", "--kb", path, "--json").stdout)
    assert report["facts_deleted"] == 1 and report["version_before"] != report["version_after"]
    report = json.loads(ktune("kb", "delete", "偏头痛", "--kb", path, "--json").stdout)
    assert report["facts_deleted"] == 5 and report["entities_after"] == 9


def test_a_bad_file_exits_2_with_one_error_line_and_no_traceback(cli_kb, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"中心词": "a", "病因": ["b"]}\n{"中心词": "c", "病因": [\n', encoding="utf-8")
    before = kbj(cli_kb, "stats")["version"]
    res = ktune("kb", "import", str(bad), "--kb", str(cli_kb), check=False, full=True)  # `python -m ktune`
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"ktune: error: {bad}:2: invalid JSON (Expecting value)"]
    assert kbj(cli_kb, "stats")["version"] == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["kb", "stats", "--kb", "{tmp}/missing.sqlite"], "no knowledge base at"),
        (["kb", "get", "偏头痛", "颜色", "--kb", "{kb}"], "unknown attribute '颜色'; valid attributes:"),
        (["kb", "stats", "--kb", "{kb}", "--schema", "{tmp}/nope.json"], "cannot read attribute schema"),
    ],
)
def test_library_errors_become_one_line_with_exit_code_2(cli_kb, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, kb=cli_kb) for a in args]
    res = ktune(*args, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("ktune: error: ") and message in res.stderr


def test_kb_location_comes_from_ktune_kb_env(cli_kb, monkeypatch):
    monkeypatch.setenv("KTUNE_KB", str(cli_kb))
    res = ktune("kb", "stats", "--json")
    assert json.loads(res.stdout)["path"] == str(cli_kb)
