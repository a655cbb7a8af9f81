"""Stages 2 and 3: fetch the KB entry for a query, then answer from it with provenance, or refuse."""

from __future__ import annotations

import logging

from ktune.errors import UnknownAttributeError
from ktune.pipeline.config import PipelineConfig
from ktune.pipeline.decode import Decoder
from ktune.pipeline.query import Query
from ktune.prompt import PROVENANCE_PREFIX, provenance_line, strip_provenance

log = logging.getLogger(__name__)

# Why an answer was refused (Answer.refusal_reason).
NO_QUERY = "no_query"  # the model found nothing to look up (or generated no valid query)
ENTITY_NOT_IN_KB = "entity_not_in_kb"  # a generated entity that links to no KB entity
NO_ATTRIBUTE = "no_attribute"  # no attribute of the schema could be read from the query
NO_KNOWLEDGE = "no_knowledge"  # the KB has the entity but no value for that attribute


def retrieve(kb, query: Query, fallback: bool = True) -> tuple[dict, str | None]:
    """Stage 2: `acquire_knowledge(linked entity, attribute)` (falling back within the attribute's intent when
    `fallback`) and, when it is empty, why."""
    if query.entity is None and query.linked_entity is None:
        return {}, NO_QUERY
    if query.linked_entity is None:
        return {}, ENTITY_NOT_IN_KB
    if query.attribute is None:
        return {}, NO_ATTRIBUTE
    try:
        knowledge = kb.acquire_knowledge(query.linked_entity, query.attribute, fallback=fallback)
    except UnknownAttributeError:
        return {}, NO_ATTRIBUTE
    return (knowledge, None) if knowledge else ({}, NO_KNOWLEDGE)


def refusal_text(config: PipelineConfig, query: Query, reason: str) -> str:
    """Says what was looked up and that the KB has no entry; never an answer from model memory."""
    if reason == NO_QUERY:
        return config.no_query_refusal
    entity = query.linked_entity or query.entity or "?"
    attribute = query.attribute or "?"
    return config.refusal_template.format(entity=entity, attribute=attribute)


def knowledge_sentence(knowledge: dict) -> str:
    """A plain statement of the retrieved facts, used when the model writes no answer body."""
    parts = [f"{entity}的{pred}：{'、'.join(values)}" for entity, preds in knowledge.items() for pred, values in preds.items()]
    return "根据知识库，" + "；".join(parts) + "。"


def with_provenance(body: str, knowledge: dict) -> str:
    """The model's answer body (any provenance-looking line it produced removed) + the real provenance."""
    lines = [ln for ln in strip_provenance(body).splitlines() if not ln.strip().startswith(PROVENANCE_PREFIX)]
    text = "\n".join(lines).strip() or knowledge_sentence(knowledge)
    return f"{text}\n{provenance_line(knowledge)}"


class AnswerStage:
    """Stage 3: greedy answer generation from question + knowledge with the run's prompt format."""

    def __init__(self, decoder: Decoder, prompt_format, config: PipelineConfig):
        self.decoder = decoder
        self.fmt = prompt_format
        self.config = config

    def run(self, questions: list[str], knowledges: list[dict]) -> list[str]:
        if not questions:
            return []
        prompts = [self.fmt.answer_prompt(q, k) for q, k in zip(questions, knowledges, strict=True)]
        beams = self.decoder.greedy(prompts, self.config.max_answer_tokens)
        return [with_provenance(b.text, k) for b, k in zip(beams, knowledges, strict=True)]
