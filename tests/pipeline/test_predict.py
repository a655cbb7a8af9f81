"""`predict` files and the ask / chat / predict CLI: schema, pass-through, bad input, resume."""

import json
import os
import subprocess
import sys

import pytest

from ktune.cli.main import main
from ktune.errors import InputError
from ktune.pipeline.predict import predict_file, read_questions
from tests.pipeline.conftest import QUESTIONS, read_jsonl


def _write_input(path, questions=QUESTIONS):
    rows = [{"id": f"q{i}", "question": q, "answer": "gold", "extra": [i]} for i, q in enumerate(questions)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows


def test_predict_output_has_the_schema_and_passes_input_fields_through(qa, tmp_path):
    rows = _write_input(tmp_path / "q.jsonl")
    report = predict_file(qa, tmp_path / "q.jsonl", tmp_path / "p.jsonl", progress=False)
    out = read_jsonl(tmp_path / "p.jsonl")
    assert report.written == len(rows) == len(out)
    for row, pred in zip(rows, out, strict=True):
        assert pred["id"] == row["id"] and pred["extra"] == row["extra"] and pred["question"] == row["question"]
        assert pred["input_answer"] == "gold"  # an input field an output field would overwrite is kept
        assert set(pred["query"]) == {"entity", "attribute", "also"}
        assert isinstance(pred["refused"], bool) and isinstance(pred["knowledge"], dict)
        assert pred["linked_entity"] is None or qa.kb.has_entity(pred["linked_entity"])
        assert isinstance(pred["answer"], str)


def test_predict_without_answers_writes_null_answers(qa, tmp_path):
    _write_input(tmp_path / "q.jsonl")
    predict_file(qa, tmp_path / "q.jsonl", tmp_path / "p.jsonl", with_answer=False, progress=False)
    assert all(p["answer"] is None for p in read_jsonl(tmp_path / "p.jsonl"))


def test_predict_resumes_a_partly_written_output_with_a_torn_line(qa, tmp_path):
    _write_input(tmp_path / "q.jsonl")
    predict_file(qa, tmp_path / "q.jsonl", tmp_path / "full.jsonl", progress=False)
    full = (tmp_path / "full.jsonl").read_text(encoding="utf-8")
    lines = full.splitlines(keepends=True)
    (tmp_path / "part.jsonl").write_text(lines[0] + lines[1] + lines[2][:10], encoding="utf-8")
    report = predict_file(qa, tmp_path / "q.jsonl", tmp_path / "part.jsonl", progress=False)
    assert report.skipped_existing == 2 and report.written == len(QUESTIONS) - 2
    assert (tmp_path / "part.jsonl").read_text(encoding="utf-8") == full


def test_predict_refuses_to_resume_into_the_output_of_another_input(qa, tmp_path):
    _write_input(tmp_path / "q.jsonl")
    (tmp_path / "p.jsonl").write_text(json.dumps({"question": "别的问题"}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="another input"):
        predict_file(qa, tmp_path / "q.jsonl", tmp_path / "p.jsonl", progress=False)


@pytest.mark.parametrize(
    "line, reason",
    [
        (b'{"question": "\xff\xfe bad"}', "UTF-8"),
        (b'{"question": 42}', "string"),
        (b'{"question": "   "}', "empty"),
        (b'{"text": "no question field"}', "question"),
        (b"not json", "JSON"),
        ('{"question": "%s"}' % ("问" * 2001), "2000"),
        (b'{"question": "\\ud800 pain"}', "surrogate"),  # valid JSON, not valid Unicode text
    ],
)
def test_bad_predict_input_names_the_line_and_writes_nothing(qa, tmp_path, line, reason):
    good = json.dumps({"question": QUESTIONS[0]}, ensure_ascii=False).encode()
    line = line.encode() if isinstance(line, str) else line
    (tmp_path / "q.jsonl").write_bytes(good + b"\n" + line + b"\n")
    with pytest.raises(InputError, match=reason) as err:
        predict_file(qa, tmp_path / "q.jsonl", tmp_path / "p.jsonl", progress=False)
    assert "q.jsonl:2" in str(err.value)
    assert not (tmp_path / "p.jsonl").exists()


def test_blank_lines_in_predict_input_are_skipped(tmp_path):
    (tmp_path / "q.jsonl").write_text('\n{"question": "感冒会传染吗？"}\n\n', encoding="utf-8")
    assert [r["question"] for r in read_questions(tmp_path / "q.jsonl", 2000)] == ["感冒会传染吗？"]


def test_cli_ask_json_and_predict_on_a_run_folder(fresh_run, mini_kb, tmp_path, capsys):
    kb = str(mini_kb.store.path)
    assert main(["-q", "ask", "--run", str(fresh_run), "--kb", kb, "--json", QUESTIONS[0]]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["question"] == QUESTIONS[0] and "query" in data and "refused" in data
    _write_input(tmp_path / "q.jsonl")
    argv = ["-q", "predict", "--run", str(fresh_run), "--kb", kb, "--input", str(tmp_path / "q.jsonl"),
            "--output", str(tmp_path / "p.jsonl"), "--no-answer", "--batch-size", "2", "--no-progress", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["written"] == len(QUESTIONS)
    assert len(read_jsonl(tmp_path / "p.jsonl")) == len(QUESTIONS)


def test_cli_predict_reports_a_lone_surrogate_as_an_input_error_before_loading(tmp_path, capsys):
    (tmp_path / "q.jsonl").write_bytes(b'{"question": "\\ud800"}\n')
    argv = ["predict", "--run", str(tmp_path / "no-run"), "--input", str(tmp_path / "q.jsonl"),
            "--output", str(tmp_path / "p.jsonl")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "q.jsonl:1" in err and "surrogate" in err and "Traceback" not in err


def test_cli_no_constrain_uses_free_generation_plus_linking(fresh_run, mini_kb, capsys):
    argv = ["-q", "ask", "--run", str(fresh_run), "--kb", str(mini_kb.store.path), "--json", "--no-constrain",
            QUESTIONS[1]]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["link_method"] is None or not data["link_method"].startswith("constrained")


def test_cli_bad_question_is_one_error_line_not_a_traceback(fresh_run, mini_kb, capsys):
    assert main(["ask", "--run", str(fresh_run), "--kb", str(mini_kb.store.path), "   "]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "Traceback" not in err


def test_cli_chat_shows_query_knowledge_and_answer(fresh_run, mini_kb, monkeypatch, capsys):
    answers = iter(["急性中耳炎的药物治疗有哪些？", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["-q", "chat", "--run", str(fresh_run), "--kb", str(mini_kb.store.path)]) == 0
    out = capsys.readouterr().out
    assert "查询：" in out and "回答" in out


@pytest.mark.parametrize("command", ["ask", "chat", "predict"])
def test_help_of_every_pipeline_command_is_instant_and_lists_run(command):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "ktune", command, "--help"], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert "--run" in out
