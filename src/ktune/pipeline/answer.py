"""Stages 2 and 3: fetch the KB entry for a query, then answer from it with provenance, or refuse."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ktune.data.answers import clean_value
from ktune.errors import UnknownAttributeError
from ktune.pipeline.answer_stream import AnswerStream, FailureStop
from ktune.pipeline.claim_spans import Fact, knowledge_facts
from ktune.pipeline.claims import SentenceCheck, check_answer, check_sentence, negated
from ktune.pipeline.config import PipelineConfig
from ktune.pipeline.decode import Decoder
from ktune.pipeline.precision import int8_steps
from ktune.pipeline.premise import Premise
from ktune.pipeline.query import Query
from ktune.prompt import PROVENANCE_PREFIX, provenance_line, strip_provenance

log = logging.getLogger(__name__)

# Why an answer was refused (Answer.refusal_reason).
NO_QUERY = "no_query"  # the model found nothing to look up (or generated no valid query)
ENTITY_NOT_IN_KB = "entity_not_in_kb"  # a generated entity that links to no KB entity
NO_ATTRIBUTE = "no_attribute"  # no attribute of the schema could be read from the query
NO_KNOWLEDGE = "no_knowledge"  # the KB has the entity but no value for that attribute
OUTSIDE_KB = "outside_kb"  # the question asks what no KB field records (cost, hospital; ktune.pipeline.outside)


def retrieve(kb, query: Query, fallback: bool = True) -> tuple[dict, str | None]:
    """Stage 2: `acquire_knowledge(linked entity, attribute)` (falling back within the attribute's intent when
    `fallback`) and, when it is empty, why."""
    if query.outside:
        return {}, OUTSIDE_KB
    if query.entity is None and query.linked_entity is None:
        return {}, NO_QUERY
    if query.linked_entity is None:
        return {}, ENTITY_NOT_IN_KB
    if query.attribute is None:
        return {}, NO_ATTRIBUTE
    try:
        knowledge = kb.acquire_knowledge(query.linked_entity, query.attribute, fallback=fallback)
        for attribute in query.also:  # the other parts of a multi-part question: the same entity's facts
            for entity, facts in kb.acquire_knowledge(query.linked_entity, attribute, fallback=fallback).items():
                knowledge.setdefault(entity, {}).update(facts)
    except UnknownAttributeError:
        return {}, NO_ATTRIBUTE
    return (knowledge, None) if knowledge else ({}, NO_KNOWLEDGE)


def refusal_text(config: PipelineConfig, query: Query, reason: str) -> str:
    """Says what was looked up and that the KB has no entry; never an answer from model memory."""
    if reason == NO_QUERY:
        return config.no_query_refusal
    if reason == OUTSIDE_KB:
        return config.outside_refusal
    entity = query.linked_entity or query.entity or "?"
    attribute = query.attribute or "?"
    return config.refusal_template.format(entity=entity, attribute=attribute)


LIST_CAP = 10  # values written out in a listing; the rest are counted, the provenance line has them all


@dataclass(frozen=True)
class GroundedAnswer:
    """An answer after the claim check: the text (body + provenance), its sentences with the facts each
    states, the sentences dropped and why, the model's body as generated, and a premise verdict if any."""

    text: str
    sentences: tuple[SentenceCheck, ...]
    dropped: tuple[SentenceCheck, ...] = ()
    raw: str | None = None
    premise: Premise | None = None


def _shown(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in map(clean_value, values):
        if v and v not in out:
            out.append(v)
    return out


def listing_sentences(knowledge: dict, intro: str = "根据知识库，", verb: str = "：") -> list[str]:
    """One plain sentence per predicate, values verbatim; past LIST_CAP values only a count."""
    out = []
    for entity, preds in knowledge.items():
        for pred, values in preds.items():
            shown = _shown(values)
            if not shown:
                continue
            # values that hold 、 or ， themselves are joined with ； so the list stays readable
            sep = "；" if any("、" in v or "，" in v or "," in v for v in shown) else "、"
            if len(shown) > LIST_CAP:
                out.append(f"{intro}{entity}的{pred}包括{sep.join(shown[:LIST_CAP])}等，共{len(shown)}项（完整列表见相关知识）。")
            else:
                out.append(f"{intro}{entity}的{pred}{verb}{sep.join(shown)}。")
    return out


def knowledge_sentence(knowledge: dict) -> str:
    """A plain statement of the retrieved facts, used when no sentence of the model's answer survives."""
    return "".join(listing_sentences(knowledge))


def clean_body(body: str) -> str:
    """The model's answer body without any provenance-looking line it produced (ktune adds the real one).

    Prefix-stable on a body of one line that cannot become a provenance line: the cleaned text of a partly
    generated body is then a prefix of the cleaned complete body (AnswerStream relies on it)."""
    lines = [ln for ln in strip_provenance(body).splitlines() if not ln.strip().startswith(PROVENANCE_PREFIX)]
    return "\n".join(lines).strip()


def ground(body: str, knowledge: dict, question: str = "", kb=None, stop_at_failure: bool = True) -> GroundedAnswer:
    """The model's body through the claim check + the real provenance line.

    Sentences that state anything the knowledge does not are dropped (recorded in `dropped`); a dropped
    sentence whose start is verified (its head: "X的不良反应：恶心、呕吐" of "X的不良反应：恶心、呕吐、头晕目眩",
    see `checker.Checker`) keeps that head, closed with 。, so what a stream sent of it stays in the answer.
    A plain listing follows them of every field of the knowledge that no remaining sentence states (all of it
    when none states a fact), so a field the model left out or a sentence the check dropped still reaches the
    user, verbatim and cited. With `stop_at_failure` (PipelineConfig.stop_at_failed_sentence) nothing the
    model wrote after the first dropped sentence is used.
    """
    check = check_answer(clean_body(body), knowledge, question, kb, heads=True, stop_at_failure=stop_at_failure)
    kept = list(check.kept)
    # appended, not prepended: a streamed answer has already sent the kept sentences
    kept += [check_sentence(s, knowledge, question, kb) for s in listing_sentences(unstated(knowledge, kept))]
    out = "".join(c.sentence for c in kept)
    return GroundedAnswer(f"{out}\n{provenance_line(knowledge)}", tuple(kept), check.dropped, raw=body)


def unstated(knowledge: dict, kept: list[SentenceCheck]) -> dict:
    """The knowledge the kept sentences do not state: every field none of them states, and the values of a
    partly stated field that no kept sentence writes (the whole field again when those are more than a listing
    shows, so its count stays the field's)."""
    fields = {(f.entity, f.predicate) for c in kept for f in c.facts}
    written = "".join(c.sentence for c in kept)
    rest: dict[str, dict[str, list[str]]] = {}
    for e, preds in knowledge.items():
        for p, values in preds.items():
            left = [v for v in values if clean_value(v) not in written] if (e, p) in fields else values
            if _shown(left):
                rest.setdefault(e, {})[p] = values if len(_shown(left)) > LIST_CAP else left
    return rest


def unchecked(body: str, knowledge: dict) -> GroundedAnswer:
    """The model's body as generated (its provenance-looking lines replaced by the real line), no check."""
    text = clean_body(body) or knowledge_sentence(knowledge)
    return GroundedAnswer(f"{text}\n{provenance_line(knowledge)}", (), raw=body)


def with_provenance(body: str, knowledge: dict, question: str = "", kb=None) -> str:
    """The checked answer text: kept sentences (or the listing) + the real provenance."""
    return ground(body, knowledge, question, kb).text


def premise_answer(premise: Premise, knowledge: dict, kb=None) -> GroundedAnswer:
    """A premise question answered from the KB alone: the matching values cited, or "not listed" + the list."""
    if premise.listed:
        cited: dict[str, dict[str, list[str]]] = {}
        for m in premise.matches:
            cited.setdefault(m.fact.entity, {}).setdefault(m.fact.predicate, []).append(m.fact.value)
        sentences = listing_sentences(cited, "根据知识库，", "包括：")
    else:
        label = "和".join(p for preds in knowledge.values() for p in preds) or "和".join(premise.attributes)
        sentences = [f"知识库中{premise.entity}的{label}没有列出“{premise.term}”。"]
        sentences += listing_sentences(knowledge, "知识库中")
    checks = [SentenceCheck(s, tuple(_facts_in(s, knowledge))) for s in sentences]
    text = "".join(sentences)
    return GroundedAnswer(f"{text}\n{provenance_line(knowledge)}", tuple(checks), premise=premise)


def _facts_in(sentence: str, knowledge: dict) -> list[Fact]:
    """The facts a rendered sentence writes out (values it contains verbatim, as clean_value shows them)."""
    if negated(sentence):
        return []
    out = []
    for fact in knowledge_facts(knowledge):
        v = clean_value(fact.value)
        if v and v in sentence and fact not in out:
            out.append(fact)
    return out


def length_groups(lengths: list[int], ratio: float = 2.0, slack: int = 64) -> list[list[int]]:
    """Indices grouped by length, shortest first: a group's longest is at most `ratio` x its shortest + `slack`
    (a batch is padded to its longest row, so a 6,000-character knowledge list would make 15 short rows cost
    as much as itself)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups and lengths[i] <= ratio * lengths[groups[-1][0]] + slack:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class AnswerStage:
    """Stage 3: greedy answer generation from question + knowledge with the run's prompt format, then the
    claim check (ktune.pipeline.claims) on every sentence."""

    def __init__(self, decoder: Decoder, prompt_format, config: PipelineConfig, kb=None):
        self.decoder = decoder
        self.fmt = prompt_format
        self.config = config
        self.kb = kb

    def stream(self, question: str, knowledge: dict, clauses: bool = True) -> AnswerStream:
        """What a streamed answer may send while it is generated (see AnswerStream); `question` as `run` gets it."""
        return AnswerStream(knowledge, question, self.kb, self.config.claim_check, clauses,
                            self.config.stop_at_failed_sentence)

    def run(self, questions: list[str], knowledges: list[dict], max_new_tokens: list[int] | None = None,
            streamer=None) -> list[GroundedAnswer]:
        """Grounded answers in order. `max_new_tokens`: a cap per question (default config.max_answer_tokens);
        greedy decoding is causal, so a row generated past its cap and cut there is exactly the capped answer.
        `streamer`: a transformers streamer that sees the batch's tokens as they are generated."""
        if not questions:
            return []
        caps = max_new_tokens or [self.config.max_answer_tokens] * len(questions)
        prompts = [self.fmt.answer_prompt(q, k) for q, k in zip(questions, knowledges, strict=True)]
        stopping = self.config.claim_check and self.config.stop_at_failed_sentence
        stop = self._failure_stop(questions, knowledges) if stopping else None
        with int8_steps():  # a quantized model's decode steps run int8 here (ktune.pipeline.precision)
            beams = self._generate(prompts, caps, streamer, stop)
        if stop is not None:  # a row ends where its stream failed, whatever a decoding round generated past it
            caps = [min(cap, end or cap) for cap, end in zip(caps, stop.ends, strict=True)]
        bodies = [b.text if len(b.tokens) <= cap else self.decoder.tokenizer.decode(b.tokens[:cap], skip_special_tokens=True)
                  for b, cap in zip(beams, caps, strict=True)]
        if not self.config.claim_check:  # the model's body as it wrote it (for before/after comparisons)
            return [unchecked(b, k) for b, k in zip(bodies, knowledges, strict=True)]
        return [ground(b, k, q, self.kb, stopping) for b, q, k in zip(bodies, questions, knowledges, strict=True)]

    def _failure_stop(self, questions: list[str], knowledges: list[dict]) -> FailureStop | None:
        tokenizer = getattr(self.decoder, "tokenizer", None)
        if tokenizer is None:  # a remote backend's decoder: completions come back whole
            return None
        return FailureStop([AnswerStream(k, q, self.kb, clauses=False) for q, k in zip(questions, knowledges, strict=True)],
                           tokenizer)

    def _generate(self, prompts: list[str], caps: list[int], streamer, stop=None) -> list:
        if streamer is not None:  # a streamer follows the rows of one generation: the batch as it came
            beams = self.decoder.greedy(prompts, max(caps), streamer=streamer, stop=stop)
        else:  # rows of similar length together: one long knowledge list must not pad every row to its length
            beams = [None] * len(prompts)
            for group in length_groups([len(p) for p in prompts]):
                row_stop = None if stop is None else stop.rows(group)
                done = self.decoder.greedy([prompts[i] for i in group], max(caps[i] for i in group), stop=row_stop)
                for i, beam in zip(group, done, strict=True):
                    beams[i] = beam
        return beams
