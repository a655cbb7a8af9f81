"""Optional teacher: rewrite questions and answers through an OpenAI-compatible /v1/chat/completions endpoint.

Entity, attribute and knowledge stay fixed. A rewritten question must still name the entity surface; a
rewritten answer must keep every value the template answer stated and may not name KB entities that are
neither the record's entity nor in its knowledge. Rejected rewrites keep the template text and are counted.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from ktune.chat_api import ChatClient, ChatError
from ktune.data.answers import clean_value
from ktune.data.dataset import DatasetRecord
from ktune.data.generate import mentioned_entities
from ktune.kb.linker import normalize
from ktune.prompt import provenance_line, strip_provenance

log = logging.getLogger(__name__)
API_KEY_ENV = "KTUNE_TEACHER_API_KEY"

QUESTION_PROMPT = (
    "把下面这个医疗问题改写成一位真实用户会提出的自然问法，可以口语化、加入少量背景，但必须原样保留“{surface}”这个名称，"
    "不要改变所问的内容（{attribute}），不要回答问题。只输出改写后的问题。\n问题：{question}"
)
ANSWER_PROMPT = (
    "根据给定知识，把下面的回答改写得更通顺自然。必须保留知识中的每一项内容，不得添加知识以外的疾病、药物或事实，"
    "保留安全提示。只输出改写后的回答。\n知识：{knowledge}\n回答：{answer}"
)


class Teacher:
    """The teacher endpoint (ktune.chat_api): one user message in, the reply's text out. The API key, when the
    endpoint needs one, is read from $KTUNE_TEACHER_API_KEY."""

    def __init__(self, url: str, model: str, timeout: float = 60.0, retries: int = 3, temperature: float = 0.7):
        self.client = ChatClient(url, model, api_key=os.environ.get(API_KEY_ENV), timeout=timeout, retries=retries,
                                 temperature=temperature, hint="--teacher URL and --teacher-model")
        self.endpoint, self.model = self.client.endpoint, model

    def complete(self, prompt: str) -> str:
        return self.client.complete([{"role": "user", "content": prompt}]).strip()


def check_question(new: str, record: DatasetRecord) -> str | None:
    """Why a rewritten question is rejected, or None when it is acceptable."""
    if not new or len(new) > 300:
        return "empty_or_long"
    if "\n" in new.strip():
        return "multiline"
    if record.surface not in new:
        return "drops_entity"
    return None


def check_answer(new: str, record: DatasetRecord, shown: list[str], linker) -> str | None:
    """Why a rewritten answer body is rejected: a dropped value or a KB name outside the knowledge."""
    if not new or len(new) > 2000:
        return "empty_or_long"
    flat = normalize(new)
    if any(normalize(v) not in flat for v in shown if normalize(v)):
        return "drops_value"
    allowed = normalize(
        json.dumps(record.knowledge, ensure_ascii=False) + record.question + record.answer
    )
    for entity in sorted(mentioned_entities(linker, new)):
        if (
            entity != record.entity
            and normalize(entity) not in allowed
            and not _mention_allowed(new, entity, allowed, linker)
        ):
            return "invents_entity"
    return None


def _mention_allowed(text: str, entity: str, allowed: str, linker) -> bool:
    """A mention is fine when the surface that named `entity` appears in the knowledge or question."""
    for _, _, s in linker.find_mentions(text):
        ents = set(linker.by_norm.get(s, ())) | {e for e, _ in linker.by_alias_norm.get(s, ())}
        if entity in ents and s in allowed:
            return True
    return False


def rewrite_record(record: DatasetRecord, teacher: Teacher, writer, linker) -> tuple[DatasetRecord, dict]:
    """(new record, {"question": accepted|reason, "answer": ...}). Knowledge and labels never change."""
    new, status = {}, {}
    try:
        q = teacher.complete(QUESTION_PROMPT.format(surface=record.surface, attribute=record.attribute or "",
                                                    question=record.question))
        status["question"] = check_question(q, record) or "accepted"
        if status["question"] == "accepted":
            new["question"] = q
        if record.kind == "in_kb":
            body = strip_provenance(record.answer)
            a = teacher.complete(ANSWER_PROMPT.format(knowledge=json.dumps(record.knowledge, ensure_ascii=False),
                                                      answer=body))
            a = strip_provenance(a)
            shown = [clean_value(v) for v in writer.shown_values(record.knowledge)]
            status["answer"] = check_answer(a, record, shown, linker) or "accepted"
            if status["answer"] == "accepted":
                new["answer"] = a + "\n" + provenance_line(record.knowledge)
    except ChatError as exc:
        log.warning("teacher failed on %s: %s", record.id or record.question, exc)
        status.setdefault("question", "error")
    if new:
        new["template"] = record.template + "+teacher"
    return replace(record, **new), status


def rewrite_splits(splits: dict, teacher: Teacher, gen, config) -> dict:
    """Rewrite the configured splits in place (order kept); returns acceptance/rejection counts."""
    stats: dict[str, dict[str, int]] = {"question": {}, "answer": {}}
    linker = gen.kb.linker
    linker.find_mentions("预热")  # build lazily-built tables before threads start
    teacher.complete("请回复：好")  # fail fast, with one clear error, when the endpoint is wrong or down
    for split in config.teacher_splits:
        records = splits.get(split, [])
        with ThreadPoolExecutor(max_workers=config.teacher_workers) as pool:
            results = list(pool.map(lambda r: rewrite_record(r, teacher, gen.writer, linker), records))
        seen = {normalize(r.question) for name, rs in splits.items() if name != split for r in rs}
        for i, (new, status) in enumerate(results):
            if normalize(new.question) in seen and new.question != records[i].question:
                new, status["question"] = replace(new, question=records[i].question), "duplicate"
            seen.add(normalize(new.question))
            records[i] = new
            for part, result in status.items():
                stats[part][result] = stats[part].get(result, 0) + 1
    return {
        "endpoint": teacher.endpoint,
        "model": teacher.model,
        "splits": list(config.teacher_splits),
        **stats,
    }
