"""H2: the judge against a local OpenAI-compatible stub, the no-judge skip, expert export/import round trip."""

import csv
import io
import json

import pytest

from ktune.errors import ConfigError, InputError
from ktune.eval.h2 import RUBRIC_VERSION, Judge, JudgeConfig, parse_verdict, run_judge
from ktune.eval.h2_experts import export_items, import_scores
from tests.chat_stub import ChatStub, chat_reply, serving

ROWS = {
    "knowledge-tuned": [
        {"id": "q1", "split": "test_seen", "question": "急性中耳炎吃什么药？",
         "answer": "可以用阿莫西林。\n相关知识：{\"急性中耳炎\":{\"药物治疗\":[\"阿莫西林\"]}}"},
        {"id": "q2", "split": "test_no_knowledge", "question": "糖尿病足怎么治疗？", "answer": "知识库中没有相关信息。"},
    ],
    "instruction-tuned (no KB)": [
        {"id": "q1", "split": "test_seen", "question": "急性中耳炎吃什么药？", "answer": "可以用利福平。"},
        {"id": "q2", "split": "test_no_knowledge", "question": "糖尿病足怎么治疗？", "answer": "多喝水。"},
    ],
}


class StubJudge(ChatStub):
    """Scores 5/5 for answers mentioning 阿莫西林, 2/4 otherwise; prefers the answer with 阿莫西林 pairwise."""

    requests: list = []

    def reply(self, body):
        StubJudge.requests.append({"path": self.path, "body": body})
        user = body["messages"][-1]["content"]
        if "回答 A" in user:
            a_part = user.split("回答 A：", 1)[1].split("回答 B：", 1)[0]
            win = "A" if "阿莫西林" in a_part else ("B" if "阿莫西林" in user else "tie")
            content = json.dumps({"helpfulness": win, "harmlessness": win, "rationale": "x"})
        else:
            good = "阿莫西林" in user
            content = "评分如下：" + json.dumps({"helpfulness": 5 if good else 2, "harmlessness": 5 if good else 4})
        return 200, chat_reply(content)


@pytest.fixture
def judge_url():
    StubJudge.requests = []
    with serving(StubJudge) as url:
        yield url + "/v1"


def test_judge_scores_blinded_answers_over_the_chat_completions_api(judge_url):
    result = run_judge(ROWS, JudgeConfig(judge_url, "stub-judge"))
    assert result["rubric_version"] == RUBRIC_VERSION and result["unparsable"] == 0
    kt = result["absolute"]["knowledge-tuned"]
    it = result["absolute"]["instruction-tuned (no KB)"]
    assert kt["helpfulness"]["n"] == 2 and it["helpfulness"]["mean"] == 2.0
    assert kt["helpfulness"]["mean"] == pytest.approx(3.5)
    pair = result["pairwise"]["instruction-tuned (no KB) vs knowledge-tuned|helpfulness"]
    assert pair["knowledge-tuned"]["k"] == 1 and pair["tie"]["k"] == 1
    sent = [r["body"]["messages"][-1]["content"] for r in StubJudge.requests]
    assert all(r["path"] == "/v1/chat/completions" for r in StubJudge.requests)
    assert not any("相关知识" in s or "knowledge-tuned" in s for s in sent)  # blinded


def test_no_judge_skips_h2_without_scores():
    result = run_judge(ROWS, JudgeConfig())
    assert "skipped" in result and "absolute" not in result


def test_judge_config_needs_url_and_model_together():
    with pytest.raises(ConfigError, match="--judge-model"):
        JudgeConfig(url="http://localhost:1/v1")
    assert Judge(JudgeConfig("http://h:1", "m")).client.endpoint == "http://h:1/v1/chat/completions"


def test_unparsable_verdicts_are_none_not_guesses():
    assert parse_verdict("no json here") is None
    assert parse_verdict('ok {"helpfulness": 4} done') == {"helpfulness": 4}


def fill(csv_path, out_path, scores):
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8-sig"))))
    for r in rows:
        r["helpfulness"], r["harmlessness"] = scores(r)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    out_path.write_text(buf.getvalue(), encoding="utf-8")


def test_expert_export_import_round_trip(tmp_path):
    paths = export_items(ROWS, tmp_path / "h2", seed=1)
    text = paths["csv"].read_text(encoding="utf-8-sig")
    assert "knowledge-tuned" not in text and "相关知识" not in text  # blinded
    assert "H2 评分表" in paths["html"].read_text(encoding="utf-8")
    key = json.loads(paths["key"].read_text(encoding="utf-8"))["items"]
    assert len(key) == 4

    def rater(bias):
        return lambda r: (("5" if key[r["code"]]["system"] == "knowledge-tuned" else "2"),
                          str(max(1, 4 - bias)))

    fill(paths["csv"], tmp_path / "alice.csv", rater(0))
    fill(paths["csv"], tmp_path / "bob.csv", rater(1))
    result = import_scores(paths["key"], [tmp_path / "alice.csv", tmp_path / "bob.csv"])
    assert result["raters"] == ["alice", "bob"]
    assert result["means"]["knowledge-tuned"]["helpfulness"]["mean"] == 5.0
    assert result["means"]["instruction-tuned (no KB)"]["helpfulness"]["n"] == 4
    assert result["agreement"]["helpfulness"]["krippendorff_alpha_interval"] == pytest.approx(1.0)
    assert result["agreement"]["helpfulness"]["cohen_kappa_quadratic"] == pytest.approx(1.0)


def test_import_rejects_scores_outside_the_scale(tmp_path):
    paths = export_items(ROWS, tmp_path / "h2")
    fill(paths["csv"], tmp_path / "r.csv", lambda r: ("7", "5"))
    with pytest.raises(InputError, match="1-5"):
        import_scores(paths["key"], [tmp_path / "r.csv"])
