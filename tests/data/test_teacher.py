"""The teacher rewrite against a local OpenAI-compatible stub server: accepted and rejected rewrites."""

import re

import pytest

from ktune.chat_api import ChatError
from ktune.data import build_dataset
from ktune.data.dataset import DatasetRecord
from ktune.data.teacher import Teacher, check_answer, check_question
from tests.chat_stub import ChatStub, chat_reply, serving

from .conftest import read_jsonl, small_config


class _Stub(ChatStub):
    mode = "good"
    calls = 0

    def reply(self, body):
        type(self).calls += 1
        return 200, chat_reply(_reply(body["messages"][0]["content"], type(self).mode))


def _reply(prompt: str, mode: str) -> str:
    if "\n问题：" in prompt:  # question rewrite
        question = prompt.rsplit("\n问题：", 1)[1]
        return "老师您好，" + question if mode == "good" else "这个怎么样？"
    if "\n回答：" not in prompt:  # the build's start-up probe
        return "好"
    answer = prompt.rsplit("\n回答：", 1)[1]
    if mode == "good":
        return "好的。" + answer
    knowledge = re.search(r"\n知识：(.*)\n回答：", prompt, re.S).group(1)
    other = "盐酸二甲双胍片" if "盐酸二甲双胍片" not in knowledge else "阿莫西林胶囊"
    return answer + f"也可以改用{other}。" if len(answer) % 2 else "请遵医嘱。"


@pytest.fixture
def stub():
    with serving(_Stub) as url:
        yield url


def _build(kb, tmp_path, url, mode):
    _Stub.mode = mode
    config = small_config(teacher_url=url, teacher_model="stub", exports=False, teacher_splits=("dev",))
    return build_dataset(kb, tmp_path / mode, config)


def test_teacher_rewrites_are_kept_when_they_keep_entity_and_values(data_kb, tmp_path, stub):
    report = _build(data_kb, tmp_path, stub, "good")
    dev = read_jsonl(tmp_path / "good" / "dev.jsonl")
    assert report["teacher"]["question"]["accepted"] == len(dev)
    assert report["teacher"]["answer"]["accepted"] == sum(r["kind"] == "in_kb" for r in dev)
    assert all(r["question"].startswith("老师您好，") for r in dev)
    assert all(r["answer"].startswith("好的。") for r in dev if r["kind"] == "in_kb")
    for r in dev:
        if r["entity"]:
            assert r["knowledge"] == data_kb.acquire_knowledge(r["entity"], r["attribute"])
    assert report["ok"]


def test_teacher_rewrites_that_drop_the_entity_or_values_or_invent_names_are_rejected(
    data_kb, tmp_path, stub
):
    report = _build(data_kb, tmp_path, stub, "bad")
    t = report["teacher"]
    assert t["question"] == {"drops_entity": report["counts"]["dev"]}
    assert set(t["answer"]) <= {"drops_value", "invents_entity"} and "accepted" not in t["answer"]
    assert t["answer"].get("invents_entity") and t["answer"].get("drops_value")
    dev = read_jsonl(tmp_path / "bad" / "dev.jsonl")
    assert not any(r["question"].startswith("这个怎么样") for r in dev)


def test_check_question_needs_the_surface():
    rec = DatasetRecord.from_json({"surface": "阿莫仙", "question": "阿莫仙副作用"})
    assert check_question("吃阿莫仙会不会拉肚子？", rec) is None
    assert check_question("吃这个药会不会拉肚子？", rec) == "drops_entity"


def test_check_answer_rejects_a_dropped_value(data_kb):
    k = data_kb.acquire_knowledge("阿莫西林胶囊", "禁忌")
    rec = DatasetRecord.from_json({"entity": "阿莫西林胶囊", "knowledge": k, "question": "阿莫西林胶囊禁忌", "answer": "x"})
    value = next(iter(k["阿莫西林胶囊"].values()))[0]
    assert check_answer(f"注意：{value}。", rec, [value], data_kb.linker) is None
    assert check_answer("请遵医嘱。", rec, [value], data_kb.linker) == "drops_value"


def test_unreachable_teacher_raises_after_retries():
    teacher = Teacher("http://127.0.0.1:9", "m", timeout=0.5, retries=1)
    with pytest.raises(ChatError, match=r"127.0.0.1:9/v1/chat/completions .*failed \(1 retries allowed\).*--teacher URL"):
        teacher.complete("hi")


def test_a_build_with_a_dead_teacher_stops_with_one_clear_error(data_kb, tmp_path):
    config = small_config(
        teacher_url="http://127.0.0.1:9", teacher_model="m", teacher_retries=0, exports=False
    )
    with pytest.raises(ChatError, match="--teacher"):
        build_dataset(data_kb, tmp_path / "dead", config)
