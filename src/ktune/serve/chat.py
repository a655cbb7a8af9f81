"""OpenAI-compatible chat: request model, which question a conversation asks, and the response objects.

ktune answers one question at a time from the KB, so a chat is reduced to one question: the last user
turn. A follow-up such as "那应该用什么药？" names no KB entity; it is then asked about the entity the most
recent earlier user turn named ("急性中耳炎，那应该用什么药？"). When no turn names one, the last turn is asked
as is and the pipeline refuses, saying that it found nothing to look up.
"""

from __future__ import annotations

import time
import uuid

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
    if not last.strip() or kb.linker.find_mentions(last):
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
