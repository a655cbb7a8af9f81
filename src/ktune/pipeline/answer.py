"""Stages 2 and 3: fetch the KB entry for a query, then answer from it with provenance, or refuse."""

from __future__ import annotations

import logging
import re

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


def retrieve(kb, query: Query) -> tuple[dict, str | None]:
    """Stage 2: `acquire_knowledge(linked entity, attribute)` and, when it is empty, why."""
    if query.entity is None and query.linked_entity is None:
        return {}, NO_QUERY
    if query.linked_entity is None:
        return {}, ENTITY_NOT_IN_KB
    if query.attribute is None:
        return {}, NO_ATTRIBUTE
    try:
        knowledge = kb.acquire_knowledge(query.linked_entity, query.attribute)
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


def clean_body(body: str) -> str:
    """The model's answer body without any provenance-looking line it produced (ktune adds the real one).

    Prefix-stable on complete sentences: the sentences of a partly generated body stay the same once the
    body is complete, so a stream can send them as they come (ktune.serve.stream)."""
    lines = [ln for ln in strip_provenance(body).splitlines() if not ln.strip().startswith(PROVENANCE_PREFIX)]
    return "\n".join(lines).strip()


def with_provenance(body: str, knowledge: dict) -> str:
    """The model's answer body (any provenance-looking line it produced removed) + the real provenance."""
    text = clean_body(body) or knowledge_sentence(knowledge)
    return f"{text}\n{provenance_line(knowledge)}"


SENTENCE_END = re.compile(r"[。！？；!?;\n]")


def split_sentences(text: str) -> tuple[list[str], str]:
    """(complete sentences, each with its end mark, the unfinished rest): a newline ends a sentence but
    starts the next one, so a sentence never ends in whitespace that a later strip() would remove."""
    done, start = [], 0
    for m in SENTENCE_END.finditer(text):
        end = m.start() if m.group() == "\n" else m.end()
        if end > start:
            done.append(text[start:end])
        start = end
    return done, text[start:]


class AnswerStage:
    """Stage 3: greedy answer generation from question + knowledge with the run's prompt format."""

    def __init__(self, decoder: Decoder, prompt_format, config: PipelineConfig):
        self.decoder = decoder
        self.fmt = prompt_format
        self.config = config

    def finish_sentence(self, sentence: str, knowledge: dict) -> str:
        """Hook on each complete answer sentence, streamed or not (a per-sentence claim check plugs in here);
        the identity for now."""
        return sentence

    def finish(self, body: str, knowledge: dict) -> str:
        """The final answer text: the cleaned body, each sentence through finish_sentence, + provenance."""
        done, rest = split_sentences(clean_body(body))
        text = "".join(self.finish_sentence(s, knowledge) for s in [*done, rest] if s)
        return with_provenance(text, knowledge)

    def run(self, questions: list[str], knowledges: list[dict], max_new_tokens: list[int] | None = None,
            streamer=None) -> list[str]:
        """Answers in order. `max_new_tokens`: a cap per question (default config.max_answer_tokens); greedy
        decoding is causal, so a row generated past its cap and cut there is exactly the capped answer.
        `streamer`: a transformers streamer that sees the batch's tokens as they are generated."""
        if not questions:
            return []
        caps = max_new_tokens or [self.config.max_answer_tokens] * len(questions)
        prompts = [self.fmt.answer_prompt(q, k) for q, k in zip(questions, knowledges, strict=True)]
        beams = self.decoder.greedy(prompts, max(caps), streamer=streamer)
        bodies = [b.text if len(b.tokens) <= cap else self.decoder.tokenizer.decode(b.tokens[:cap], skip_special_tokens=True)
                  for b, cap in zip(beams, caps, strict=True)]
        return [self.finish(body, k) for body, k in zip(bodies, knowledges, strict=True)]
