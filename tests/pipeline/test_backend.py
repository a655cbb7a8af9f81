"""The `openai` generation backend against a stub completions server: the request format (raw prompts, stop,
temperature 0, max_tokens, the stage-1 GBNF in the chosen body field), the KB-key check of what comes back, and
`ktune predict --backend openai`. The GBNF itself is checked by turning it into a regular expression."""

import json
import re

import pytest

from ktune.pipeline.answer import ENTITY_NOT_IN_KB
from ktune.pipeline.gbnf import KeyGrammar
from ktune.prompt import PromptFormat
from tests.chat_stub import CompletionsStub

pytest.importorskip("openai")

FMT = PromptFormat()


# --- the grammar ------------------------------------------------------------------------------------------------
def gbnf_regex(gbnf: str) -> re.Pattern:
    """The language of the GBNF subset ktune.pipeline.gbnf writes (literals, rule names, groups, |) as a regex."""
    rules = dict(line.split(" ::= ", 1) for line in gbnf.strip().splitlines())
    token = re.compile(r'"((?:[^"\\]|\\.)*)"|([A-Za-z][\w-]*)|([()|])|\s+')

    def expand(body: str) -> str:
        out, pos = [], 0
        while pos < len(body):
            m = token.match(body, pos)
            assert m, f"unexpected GBNF at {body[pos:pos + 20]!r}"
            pos = m.end()
            if m.group(1) is not None:
                out.append(re.escape(json.loads(f'"{m.group(1)}"')))
            elif m.group(2):
                out.append(f"(?:{expand(rules[m.group(2)])})")
            elif m.group(3):
                out.append({"(": "(?:", ")": ")", "|": "|"}[m.group(3)])
        return "".join(out)

    return re.compile(expand(rules["root"]))


def test_the_gbnf_accepts_exactly_the_kb_keys_and_the_no_query_answer(mini_kb):
    with mini_kb.snapshot():
        grammar = KeyGrammar.from_kb(mini_kb, FMT)
    language = gbnf_regex(grammar.gbnf())
    keys = [f"{s}|{a}\n" for s in grammar.names for a in grammar.attributes_for_surface(s)]
    assert "偏头疼|临床表现\n" in keys and "偏头痛|临床表现\n" in keys  # an alias and its entity
    assert all(language.fullmatch(k) for k in keys)
    assert language.fullmatch("无\n")
    for wrong in ("偏头|临床表现\n", "偏头痛|功效\n", "偏头痛临床表现\n", "偏头痛|临床表现", "感冒药|传染性\n", "无"):
        assert not language.fullmatch(wrong), wrong
    assert grammar.parse("偏头疼|临床表现") == ("偏头疼", "临床表现")
    assert grammar.parse("无") == "无"
    assert grammar.parse("偏头疼|功效") is None and grammar.parse("头疼|临床表现") is None


def test_shared_prefixes_are_written_once(mini_kb):
    with mini_kb.snapshot():
        text = KeyGrammar.from_kb(mini_kb, FMT).gbnf()
    root = text.splitlines()[0]
    assert root.count('"急性') == 1 and "中耳炎" in root and "鼻炎" in root


# --- the backend against a stub server --------------------------------------------------------------------------
def _remote_qa(fresh_run, kb, url, **kwargs):
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig
    from ktune.pipeline.backend import OpenAIBackend

    config = PipelineConfig(max_query_tokens=24, max_answer_tokens=40, mention_fallback=False)
    return KnowledgeTunedQA.from_pretrained(fresh_run, kb=kb, config=config,
                                            backend=OpenAIBackend(url, "ktune-run", retries=0, **kwargs))


def test_queries_and_answers_come_from_the_server_with_the_runs_prompts(fresh_run, mini_kb, stub):
    qa = _remote_qa(fresh_run, mini_kb, stub)
    answers = qa.ask_batch(["急性中耳炎用什么药？", "急性中耳炎吃啥药"])
    assert [a.linked_entity for a in answers] == ["急性中耳炎", "急性中耳炎"]
    # the first free query is a KB key; the second (急性中耳, a fuzzy link) misses and is re-decoded under the
    # grammar, and the re-rank takes the key the question writes
    assert answers[0].link_method == "exact" and answers[1].link_method.startswith("constrained:")
    assert answers[0].knowledge["急性中耳炎"]["药物治疗"] == ["阿莫西林", "头孢菌素", "镇痛药"]
    assert answers[0].answer.startswith("急性中耳炎的药物治疗包括阿莫西林。根据知识库，急性中耳炎的药物治疗：头孢菌素、镇痛药。"
                                        "根据知识库，急性中耳炎的相关药物：阿莫西林胶囊。\n相关知识：")
    assert answers[0].generation == {"backend": "openai", "model": "ktune-run", "query_constraint": "grammar"}
    assert answers[0].to_json()["generation"]["backend"] == "openai"

    free, constrained, answer = [r["body"] for r in CompletionsStub.seen]
    assert all(r["path"] == "/v1/completions" for r in CompletionsStub.seen)
    # questions are batched shortest first, as the local path does
    assert free["prompt"] == [FMT.query_prompt("急性中耳炎吃啥药"), FMT.query_prompt("急性中耳炎用什么药？")]
    assert free["stop"] == ["\n"] and free["temperature"] == 0 and free["max_tokens"] == 24
    assert free["model"] == "ktune-run" and "grammar" not in free
    assert constrained["prompt"] == [FMT.query_prompt("急性中耳炎吃啥药")]
    assert constrained["grammar"].startswith("root ::= ") and "中耳炎" in constrained["grammar"]
    assert answer["prompt"][0].startswith("问题：") and answer["prompt"][0].endswith("回答：")
    assert "知识：" in answer["prompt"][0] and answer["max_tokens"] == 40 and "grammar" not in answer


def test_vllm_gets_the_grammar_under_structured_outputs(fresh_run, mini_kb, stub):
    qa = _remote_qa(fresh_run, mini_kb, stub, grammar_field="structured_outputs.grammar")
    answer = qa.ask("急性中耳炎吃啥药", with_answer=False)
    assert answer.linked_entity == "急性中耳炎" and answer.link_method.startswith("constrained:")
    assert CompletionsStub.seen[1]["body"]["structured_outputs"]["grammar"].startswith("root ::= ")


def test_output_that_is_no_kb_key_is_resolved_as_free_text_and_never_looked_up(fresh_run, mini_kb, stub, caplog):
    CompletionsStub.constrained = {"耳朵发炎吃啥药": "耳朵发炎|药物治疗"}  # a server that ignores the grammar
    qa = _remote_qa(fresh_run, mini_kb, stub, grammar_field="structured_outputs.grammar")
    answer = qa.ask("耳朵发炎吃啥药")
    assert answer.refused and answer.refusal_reason == ENTITY_NOT_IN_KB and answer.linked_entity is None
    assert answer.knowledge == {} and "does not apply it" in caplog.text
    assert len(CompletionsStub.seen) == 2  # the two query calls; a refusal needs no answer call


def test_without_a_grammar_field_stage_1_is_free_decoding_and_linking(fresh_run, mini_kb, stub):
    from ktune.pipeline import PipelineConfig

    qa = _remote_qa(fresh_run, mini_kb, stub, grammar_field="none")
    qa.config = PipelineConfig(query_mode="greedy", mention_fallback=False)
    qa.query_stage.config = qa.config
    answer = qa.ask("急性中耳炎用什么药？", with_answer=False)
    assert answer.linked_entity == "急性中耳炎" and answer.link_method == "exact"
    assert answer.generation["query_constraint"] == "none"
    assert all("grammar" not in r["body"] for r in CompletionsStub.seen)


def test_ktune_predict_with_the_openai_backend(fresh_run, mini_kb, stub, tmp_path, capsys):
    from ktune.cli.main import main

    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": q}, ensure_ascii=False) + "\n"
                                 for q in ("急性中耳炎用什么药？", "急性中耳炎吃啥药")), encoding="utf-8")
    out = tmp_path / "p.jsonl"
    rc = main(["predict", "--run", str(fresh_run), "--kb", str(mini_kb.store.path), "--input", str(questions),
               "--output", str(out), "--no-progress", "--backend", "openai", "--base-url", stub + "/v1",
               "--model", "ktune-run"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["linked_entity"] for r in rows] == ["急性中耳炎", "急性中耳炎"]
    assert rows[1]["generation"] == {"backend": "openai", "model": "ktune-run", "query_constraint": "grammar"}


def test_the_openai_backend_needs_a_url_and_a_model(fresh_run, mini_kb, capsys):
    from ktune.cli.main import main

    assert main(["ask", "感冒会传染吗？", "--run", str(fresh_run), "--kb", str(mini_kb.store.path),
                 "--backend", "openai"]) == 2
    assert "--backend openai needs --base-url" in capsys.readouterr().err


def test_a_no_query_for_a_question_naming_a_kb_entry_asks_the_server_for_the_attribute_after_it(fresh_run, mini_kb,
                                                                                                stub):
    from ktune.pipeline import PipelineConfig

    qa = _remote_qa(fresh_run, mini_kb, stub)
    qa.config = qa.query_stage.config = PipelineConfig()  # mention_fallback on
    answer = qa.ask("偏头痛挂什么科", with_answer=False)
    assert answer.linked_entity == "偏头痛" and answer.query == ("偏头痛", "就诊科室")
    assert answer.link_method.startswith("named_entity:")
    assert CompletionsStub.seen[-1]["body"]["prompt"] == [FMT.query_prompt("偏头痛挂什么科") + "偏头痛|"]


def test_warm_builds_the_grammar_text_without_asking_the_server(fresh_run, mini_kb, stub):
    qa = _remote_qa(fresh_run, mini_kb, stub)
    qa.warm()
    assert CompletionsStub.seen == []
    with qa.snapshot():
        assert qa.query_stage.grammar._gbnf is not None


def test_ktune_eval_scores_the_remote_system_on_labelled_items(fresh_run, mini_kb, stub, tmp_path, capsys):
    from ktune.cli.main import main

    otitis = {"gold_entities": ["急性中耳炎"], "gold_predicates": ["药物治疗"], "in_kb": True}
    items = [{"id": "free", "question": "急性中耳炎用什么药？", **otitis},  # the free query is a KB key
             {"id": "grammar", "question": "急性中耳炎吃啥药", **otitis},  # a near miss, then the grammar's key
             {"id": "none", "question": "耳朵发炎吃啥药", "gold_entities": [], "gold_predicates": [], "in_kb": False}]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
    rc = main(["eval", "--items", str(path), "--run", str(fresh_run), "--kb", str(mini_kb.store.path),
               "--out", str(tmp_path / "eval"), "--systems", "model,oracle", "--json", "--backend", "openai",
               "--base-url", stub + "/v1", "--model", "ktune-run", "--api-key", "remote-key"])
    assert rc == 0
    systems = json.loads(capsys.readouterr().out)["retrieval"]["systems"]
    # the oracle ablation needs the run's model here: skipped, not run locally behind the flag's back
    assert list(systems) == ["knowledge-tuned (openai: ktune-run)"]
    scores = systems["knowledge-tuned (openai: ktune-run)"]["mine"]
    assert (scores["retrieval_accuracy"]["k"], scores["retrieval_accuracy"]["n"]) == (2, 2)
    assert (scores["refusal"]["recall"]["k"], scores["refusal"]["recall"]["n"]) == (1, 1)
    assert scores["invalid_query_rate"]["k"] == 0
    assert {r["path"] for r in CompletionsStub.seen} == {"/v1/completions"}
    assert {r["auth"] for r in CompletionsStub.seen} == {"Bearer remote-key"}
    assert any("grammar" in r["body"] for r in CompletionsStub.seen)  # the constrained re-decode went remote too


def test_the_premise_suite_refuses_the_openai_backend_rather_than_ignoring_it(fresh_run, tmp_path, capsys):
    from ktune.cli.main import main

    assert main(["eval", "--suite", "premise", "--run", str(fresh_run), "--out", str(tmp_path), "--backend",
                 "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    assert "--backend openai applies to the retrieval and answers suites" in capsys.readouterr().err
