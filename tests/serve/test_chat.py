"""Which question a conversation asks: a follow-up takes the entity of an earlier turn, a new question does not."""

import pytest

from ktune.serve.chat import ChatMessage, conversation_question, is_follow_up

EARLIER = [ChatMessage(role="user", content="我5岁的儿子确诊急性中耳炎。"), ChatMessage(role="assistant", content="好的。")]


def _ask(kb, last: str):
    return conversation_question([*EARLIER, ChatMessage(role="user", content=last)], kb, 64)


@pytest.mark.parametrize("turn", ["那应该吃什么药？", "应该用什么药？", "它有什么副作用", "这个病严重吗", "孕妇能吃吗", "挂什么科？",
                                  "还有别的药吗", "一天吃几次"])
def test_a_follow_up_is_asked_about_the_earlier_turns_entity(mini_kb, turn):
    question, how = _ask(mini_kb, turn)
    assert question == f"急性中耳炎，{turn}"
    assert how == {"turn": 2, "context_from_turn": 0, "context": "急性中耳炎"}


@pytest.mark.parametrize("turn", ["头疼怎么办", "我肚子疼怎么办？", "发烧了怎么办", "那失眠呢？", "谢谢", "好的"])
def test_a_new_question_with_content_of_its_own_is_asked_as_is(mini_kb, turn):
    question, how = _ask(mini_kb, turn)
    assert question == turn
    assert how == {"turn": 2, "context_from_turn": None, "context": None}


def test_a_turn_naming_a_kb_entity_is_asked_as_is(mini_kb):
    assert _ask(mini_kb, "偏头疼看什么科？")[0] == "偏头疼看什么科？"


def test_a_pronoun_makes_a_follow_up_even_with_other_words():
    assert is_follow_up("它对头疼有用吗")  # asks about the earlier entity (a premise question)
    assert not is_follow_up("头疼有什么用")  # the same question about a thing of its own
