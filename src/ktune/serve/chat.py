"""OpenAI-compatible chat: request model, which question a conversation asks, and the response objects.

ktune answers one question at a time from the KB, so a chat is reduced to one question: the last user
turn. A follow-up names no KB entity: it refers back with a pronoun ("它有什么副作用") or leaves the entity
out ("那应该用什么药？", "孕妇能吃吗"). It is then asked about the entity the most recent earlier user turn named
("急性中耳炎，那应该用什么药？"). A turn that names no KB entity but has content of its own ("头疼怎么办") is a new
question, asked as is: attaching it to the previous turn's entity would answer about the wrong thing. When no
turn names an entity, the last turn is asked as is and the pipeline refuses, saying what it found to look up.
"""

from __future__ import annotations

import re
import time
import uuid
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

from ktune.errors import InputError


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields ktune reads; other OpenAI fields (temperature, top_p, user, ...) are accepted and ignored:
    decoding is always greedy, so an answer is reproducible and its provenance checkable."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=1, description="one answer per question: decoding is greedy")
    temperature: float | None = None


def message_text(message: ChatMessage, where: str) -> str:
    """The text of a message: a string, or the text parts of a content list (other part types refused)."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise InputError(f"{where}: content part of type {part.type!r} is not supported; ktune reads text parts only")
        texts.append(part.text)
    return "".join(texts)


# Pronouns that stand for what the conversation was about: a turn that holds one is a follow-up.
PRONOUNS = ("它们", "它", "该药", "此药", "这药", "这个药", "这种药", "该病", "此病", "这病", "这个病", "这种病")
# Words with no content of their own in a follow-up (beside the attributes' cue words): connectives,
# determiners, question and modal words, doses, and who is to take it.
FILLER_WORDS = (
    "那么", "那", "还有", "另外", "然后", "请问", "想问", "问一下", "顺便", "这个", "那个", "这种", "那种", "应该", "应当",
    "需要", "可以", "能否", "是否", "什么", "怎么样", "怎么", "怎样", "如何", "哪些", "哪个", "哪种", "多少", "多久", "一天",
    "一次", "每天", "每次", "别的", "其他", "其它", "平时", "一般", "最好", "主要", "孩子", "小孩", "儿童", "宝宝", "孕妇",
    "老人", "大人", "成人", "我", "你",
)
FILLER_CHARS = set("的了吗呢吧啊呀么嘛是有要该能会用吃服喝都还也就才很多大小不好行没个些其和与及次片粒0123456789")


ASKING = re.compile(r"[?？吗呢么]|什么|怎|如何|哪|多少|几|多久")  # a question, not "好的"


@lru_cache(maxsize=1)
def _cue_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the attributes' cue words, those and the filler words longest first)."""
    from ktune.eval.baselines.rules import ATTRIBUTE_CUES

    cues = {w for words in ATTRIBUTE_CUES.values() for w in words}
    return tuple(sorted(cues)), tuple(sorted(cues | set(FILLER_WORDS), key=len, reverse=True))


def is_follow_up(text: str) -> bool:
    """A turn that asks about what the conversation was about: it holds a pronoun for it, or it asks (for an
    attribute: 副作用, 吃什么药, 怎么办, ...) and, once those words and filler are taken out, has nothing of its own."""
    rest = re.sub(r"[\W_]", "", text)
    if not rest:
        return False
    if any(p in rest for p in PRONOUNS):
        return True
    cues, removable = _cue_words()
    if not (ASKING.search(text) or any(c in rest for c in cues)):
        return False
    for word in removable:
        rest = rest.replace(word, "")
    return set(rest) <= FILLER_CHARS


def conversation_question(messages: list[ChatMessage], kb, max_messages: int) -> tuple[str, dict]:
    """(the question to ask, how it was read from the conversation: {"turn", "context_from_turn", "context"})."""
    if len(messages) > max_messages:
        raise InputError(f"the conversation has {len(messages)} messages, over the limit of {max_messages}; "
                         "send the recent turns only")
    users = [(i, message_text(m, f"messages[{i}]")) for i, m in enumerate(messages) if m.role == "user"]
    if not users:
        raise InputError("the conversation has no user message; ask the question as a message with role 'user'")
    turn, last = users[-1]
    how = {"turn": turn, "context_from_turn": None, "context": None}
    if not last.strip() or kb.linker.find_mentions(last) or not is_follow_up(last):
        return last, how
    for i, earlier in reversed(users[:-1]):
        mentions = kb.linker.find_mentions(earlier)
        if mentions:
            mention = max(mentions, key=lambda m: (m[1] - m[0], m[0]))[2]  # the longest, the later on a tie
            how.update(context_from_turn=i, context=mention)
            return f"{mention}，{last.strip()}", how
    return last, how


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(result) -> dict:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def completion(result, model: str, ktune: dict) -> dict:
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer.answer},
                     "finish_reason": result.finish_reason, "logprobs": None}],
        "usage": usage(result),
        "ktune": ktune,
    }


def chunk(cid: str, model: str, delta: dict, finish_reason: str | None = None, **extra) -> dict:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        **extra,
    }
