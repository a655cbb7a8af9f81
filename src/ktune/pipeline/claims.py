"""The claim check: every sentence of an answer may state only values of the knowledge it was given.

A sentence is read as spans and connective text. Spans are the knowledge's values (verbatim: the raw value
or the value as the dataset writes it, markup stripped), the knowledge's entity under its KB names and
aliases, and its predicate / attribute names. With values and names as slots, the sentence must then read
as one whole frame the answer step was trained on (`ktune/data/answer_bank.json`, a per-attribute frame
only over that attribute's knowledge) or one ktune writes itself. Anything else is a claim the knowledge
does not support (a rewritten value, a term copied from the question, an entity from model memory, a
predicate name listed as a value, another attribute's wording) and the sentence is dropped, with the
words no frame explains as its `terms`.

Why spans and frames rather than a similarity score: a value is either copied or it is not, and the
check has to explain itself (`SentenceCheck.reason`, `terms`). Why "in the question" never counts as
support: a question that states a premise ("利福平可以治疗肝胆管结石吗") would otherwise license the answer
to repeat it as a KB fact.

`check_sentence` is pure (question, knowledge and KB in, verdict out) so a streaming answer can check
each sentence as it completes; `check_answer` runs it over a whole answer body. How a sentence is read as
spans: ktune.pipeline.claim_spans; the frames it is read against: ktune.pipeline.claim_frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ktune.pipeline.claim_frames import LIST_GLUE, frame_patterns, is_connective, residue
from ktune.pipeline.claim_spans import (
    Fact,
    KnowledgeIndex,
    Span,
    find_spans,
    index_knowledge,
    names_entity,
    split_sentences,
)

_GLUE_CHARS = set("、；;，,和及与或 ")  # what joins the values of one run (_glue)
_LIST_SEP = set("、；;")  # between list items only: a predicate name next to one is written as a value
NEGATION = re.compile(r"没有列出|未列出|没有记载|未记载|不包括|并未|没有收录|未收录|无法根据知识库")

# Reasons a sentence is dropped, most specific first.
PREDICATE_AS_VALUE = "predicate_as_value"  # a predicate / attribute name listed among the values
QUESTION_ONLY_TERM = "question_only_term"  # a term that only the question contains
UNSUPPORTED_TERM = "unsupported_term"  # a KB name that the knowledge used does not contain
OTHER_FIELD = "other_field"  # values of the knowledge stated under a field that does not hold them
UNVERIFIED_TEXT = "unverified_text"  # text that is neither a value nor trained connective text (a rewrite)


@dataclass(frozen=True)
class SentenceCheck:
    """One sentence: the facts it states, or why it was dropped (reason + the offending terms)."""

    sentence: str
    facts: tuple[Fact, ...] = ()
    ok: bool = True
    reason: str | None = None
    terms: tuple[str, ...] = ()
    stated_values: int = 0  # value spans + value-like items that are not verbatim KB values
    verbatim_values: int = 0
    predicates_as_values: tuple[str, ...] = ()

    def to_json(self) -> dict:
        out = {"text": self.sentence, "facts": [f.to_json() for f in self.facts]}
        if not self.ok:
            out.update(reason=self.reason, terms=list(self.terms))
        return out


@dataclass(frozen=True)
class ClaimCheck:
    kept: tuple[SentenceCheck, ...]
    dropped: tuple[SentenceCheck, ...]

    @property
    def all(self) -> tuple[SentenceCheck, ...]:
        return self.kept + self.dropped


# --- the check ----------------------------------------------------------------------------------
def check_sentence(sentence: str, knowledge: dict, question: str = "", kb=None) -> SentenceCheck:
    """Keep `sentence` only if every term it relates to the entity is a value or name of `knowledge`.

    `question` is used only to say why a term failed (a term only the question contains); it never
    supports a claim. `kb` (a KnowledgeBase) recognises the entity's aliases and KB names in the text;
    without it only the knowledge's own strings are recognised.
    """
    idx = index_knowledge(knowledge, kb)
    return _check(sentence, idx, question, kb)


def _check(sentence: str, idx: KnowledgeIndex, question: str, kb) -> SentenceCheck:
    text = sentence.strip()
    if is_connective(text):
        return SentenceCheck(text)
    spans = find_spans(text, idx)
    as_values = tuple(sp.text for k, sp in enumerate(spans) if sp.kind == "predicate" and _in_list(text, spans, k))
    framed = spans if not as_values and _framed(text, spans, idx) else None
    if framed is None and not as_values:
        # second reading: one-character values anywhere (旋花根以根入药), and the question's own words where
        # a frame says what the user wrote ("您问的“{surface}”..."): only a whole-frame match accepts them
        relaxed = find_spans(text, idx, one_char_anywhere=True, question=question)
        framed = relaxed if _framed(text, relaxed, idx) else None
    if framed is not None:
        facts = _facts(framed, idx)
        verbatim = sum(1 for sp in framed if sp.kind == "value")
        return SentenceCheck(text, facts, stated_values=verbatim, verbatim_values=verbatim)
    if not as_values and (_framed(text, spans, idx, bind=False) or _framed(text, relaxed, idx, bind=False)):
        values = tuple(sp.text for sp in spans if sp.kind == "value")  # in a frame, under another field's name
        return SentenceCheck(text, _facts(spans, idx), ok=False, reason=OTHER_FIELD, terms=values,
                             stated_values=len(values), verbatim_values=len(values))
    gaps, pos = [], 0
    for sp in spans:
        gaps.append(text[pos:sp.start])
        pos = sp.end
    gaps.append(text[pos:])
    verbatim = sum(1 for sp in spans if sp.kind == "value")
    terms = [t for g in gaps if not is_connective(g) for t in residue(g)]
    stated = verbatim + len(as_values) + sum(len([x for x in re.split(r"[、；;，,]", t) if x]) for t in terms)
    if not terms and not as_values:  # each gap is trained wording, but no frame has them in this order
        terms = [g.strip() for g in gaps if g.strip() and not set(g) <= LIST_GLUE]
    reason = _reason(terms, as_values, idx, question, kb)
    return SentenceCheck(text, _facts(spans, idx), ok=False, reason=reason, terms=tuple(as_values) + tuple(terms),
                         stated_values=stated, verbatim_values=verbatim, predicates_as_values=as_values)


def _facts(spans: list[Span], idx: KnowledgeIndex) -> tuple[Fact, ...]:
    facts: list[Fact] = []
    for sp in spans:
        if sp.kind == "value":
            facts.extend(f for f in idx.values[sp.text] if f not in facts)
    return tuple(facts)


def _framed(text: str, spans: list[Span], idx: KnowledgeIndex, bind: bool = True) -> bool:
    """Some trained frame reads the sentence, and every value it states is a value of the field the frame
    states it under: a per-attribute frame's attribute ("X含有{vals}" states 成份: over 不良反应 values it would be
    a new claim), a frame that names the field its name ("X的禁忌：恶心" when 恶心 is one of X's 不良反应 says the KB
    lists a contraindication it does not). `bind=False`: the frame alone (to tell why a sentence failed)."""
    if _doubled(text, spans):
        return False
    skeleton = _skeleton(text, spans)
    # a verdict that the KB does not list a term relates no value to the field it names
    stated = [idx.values[sp.text] for sp in spans if sp.kind == "value"] if bind and not negated(text) else []
    return any((attr is None or attr in idx.attributes) and _frame_match(p, skeleton, idx, stated, attr)
               for p, attr in frame_patterns())


def _doubled(text: str, spans: list[Span]) -> bool:
    """A value whose first character the connective text right before it repeats (有有特殊的香气): the model
    wrote the start of the value twice, so what it states is not the value."""
    ends = {sp.end for sp in spans}
    return any(sp.kind == "value" and sp.start > 0 and sp.start not in ends and text[sp.start - 1] == sp.text[0]
               for sp in spans)


def _skeleton(text: str, spans: list[Span]) -> str:
    """The sentence with each run of values (joined by list glue, maybe ending in 等) as \x01 and each
    entity name as \x02; predicate names stay text (frames write attribute names literally)."""
    out, pos, k = [], 0, 0
    while k < len(spans):
        sp = spans[k]
        out.append(text[pos:sp.start])
        if sp.kind == "value":
            end = sp.end
            while k + 1 < len(spans) and spans[k + 1].kind == "value" and _glue(text[end:spans[k + 1].start]):
                k += 1
                end = spans[k].end
            if text.startswith("等", end):
                end += 1
            out.append("\x01")
            pos = end
        elif sp.kind == "name":
            out.append("\x02")
            pos = sp.end
        elif sp.kind == "surface":
            out.append("\x03")
            pos = sp.end
        else:
            out.append(sp.text)
            pos = sp.end
        k += 1
    out.append(text[pos:])
    return "".join(out)


def _glue(between: str) -> bool:
    return bool(between) and set(between) <= _GLUE_CHARS


def _frame_match(pattern: re.Pattern, skeleton: str, idx: KnowledgeIndex, stated: list[list[Fact]] = (),
                 attribute: str | None = None) -> bool:
    """`pattern` reads the skeleton, the field names it spells out are the knowledge's, and each stated value
    (its facts) lies under the field the frame states: `attribute`, or a field the sentence names."""
    m = pattern.fullmatch(skeleton)
    if not m:
        return False
    named = set(m.group("pred").split("和")) if "pred" in m.groupdict() else set()  # a premise verdict names several
    if not named <= idx.predicates:
        return False
    fields = named | ({attribute} if attribute else set())
    return not fields or all(any(idx.fields_of(f) & fields for f in facts) for facts in stated)


def _in_list(text: str, spans: list[Span], k: int) -> bool:
    """A predicate name written as a list item: a list separator right before or after it (a frame writes a
    predicate name only as a header, "X的药物治疗包括…", never between 、)."""
    sp = spans[k]
    before = text[sp.start - 1] if sp.start else ""
    after = text[sp.end] if sp.end < len(text) else ""
    return before in _LIST_SEP or after in _LIST_SEP


def _reason(terms: list[str], as_values, idx: KnowledgeIndex, question: str, kb) -> str:
    from ktune.kb.linker import normalize

    if as_values:
        return PREDICATE_AS_VALUE
    q = normalize(question or "")
    for t in terms:
        nt = normalize(t)
        if len(nt) >= 2 and (nt in q or any(m in q for _, _, m in _mentions(kb, t))) and nt not in idx.norm_text:
            return QUESTION_ONLY_TERM
    for t in terms:
        if any(m not in idx.norm_text and not names_entity(kb, m, idx.names) for _, _, m in _mentions(kb, t)):
            return UNSUPPORTED_TERM
    return UNVERIFIED_TEXT


def _mentions(kb, text: str):
    return kb.linker.find_mentions(text) if kb is not None else []


def check_answer(body: str, knowledge: dict, question: str = "", kb=None, heads: bool = False,
                 stop_at_failure: bool = False) -> ClaimCheck:
    """`check_sentence` over every sentence of `body`; kept and dropped sentences in answer order. With `heads`,
    a dropped sentence's verified head (`Checker.head`) is kept in its place. With `stop_at_failure`, the first
    dropped sentence ends the body: what the model wrote after it is not used (a model that has just stated
    something the knowledge does not say is not trusted for the rest; stage 3 stops generating there)."""
    from ktune.pipeline.checker import Checker  # the clause reading builds on this module's sentence check

    checker = Checker(knowledge, question, kb)
    kept, dropped = [], []
    for sentence in split_sentences(body, knowledge):
        check = checker.sentence(sentence)
        if check.ok:
            kept.append(check)
            continue
        dropped.append(check)
        head = checker.head(check.sentence) if heads else None
        if head is not None:
            kept.append(head)
        if stop_at_failure:
            break
    return ClaimCheck(tuple(kept), tuple(dropped))


def negated(sentence: str) -> bool:
    """A sentence that says the KB does not list something (asserts no relation)."""
    return bool(NEGATION.search(sentence))
