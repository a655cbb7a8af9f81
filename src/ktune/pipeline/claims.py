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
each sentence as it completes; `check_answer` runs it over a whole answer body.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass, field
from functools import lru_cache

from ktune.data.answers import BANK_PATH, clean_value

# Link methods that name the same KB entity (a fuzzy guess is not evidence that two names are one entity).
SAME_ENTITY_METHODS = ("exact", "normalized", "generic", "normalized_alias")
SENTENCE_END = "。！？!?\n"
LIST_GLUE = set("、；;，,和及与或等 。！？!?")
_LIST_SEP = set("、；;")  # between list items only: a predicate name next to one is written as a value
# Single-character values (性味 甘, 传染性 有) count only between these, never inside connective words.
_ONE_CHAR_BEFORE = set("：:、；;，,为是") | {""}
_ONE_CHAR_AFTER = set("、；;，,。等") | {""}
NEGATION = re.compile(r"没有列出|未列出|没有记载|未记载|不包括|并未|没有收录|未收录|无法根据知识库")

# Reasons a sentence is dropped, most specific first.
PREDICATE_AS_VALUE = "predicate_as_value"  # a predicate / attribute name listed among the values
QUESTION_ONLY_TERM = "question_only_term"  # a term that only the question contains
UNSUPPORTED_TERM = "unsupported_term"  # a KB name that the knowledge used does not contain
UNVERIFIED_TEXT = "unverified_text"  # text that is neither a value nor trained connective text (a rewrite)

# Connective text of the sentences ktune writes itself (listing, premise verdicts), beside the answer bank.
OWN_FRAMES = (
    "根据知识库，{name}的{pred}：{vals}。",
    "根据知识库，{name}的{pred}包括：{vals}。",
    "根据知识库，{name}的{pred}包括{vals}，共{n}项（完整列表见相关知识）。",
    "知识库中{name}的{pred}：{vals}。",
    "知识库中{name}的{pred}包括{vals}，共{n}项（完整列表见相关知识）。",
    "知识库中{name}的{pred}没有列出“{term}”。",
)


@dataclass(frozen=True)
class Fact:
    entity: str
    predicate: str
    value: str

    def to_json(self) -> dict:
        return {"entity": self.entity, "predicate": self.predicate, "value": self.value}


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


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: str  # value | name | predicate
    text: str


@dataclass
class _Index:
    """The knowledge as the check needs it: value strings -> facts, entity names, predicate names."""

    values: dict[str, list[Fact]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    predicates: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)  # the schema attributes the knowledge's predicates map to
    norm_text: str = ""


# --- connective text ---------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{[a-z]+\}")


ATTRIBUTION = "根据知识库，"


@lru_cache(maxsize=1)
def _frames() -> tuple[tuple[str, str | None], ...]:
    """Every sentence frame the answer step is trained on and ktune's own sentences, each with the attribute
    it states (None: any). Per-attribute frames also hold without the sentence-initial 根据知识库， and, where
    they name their attribute (X的适应症：…), with any predicate of the knowledge in its place."""
    bank = json.loads(BANK_PATH.read_text(encoding="utf-8"))
    frames: set[tuple[str, str | None]] = {(f, None) for f in OWN_FRAMES}

    def walk(node, attribute: str | None) -> None:
        if isinstance(node, str):
            for sentence in split_sentences(node):  # the check works sentence by sentence
                frames.add((sentence, attribute))
                if sentence.startswith(ATTRIBUTION):
                    frames.add((sentence[len(ATTRIBUTION):], attribute))
                if attribute and attribute in sentence:
                    frames.add((sentence.replace(attribute, "{pred}"), None))
        elif isinstance(node, list):
            for x in node:
                walk(x, attribute)
        elif isinstance(node, dict):
            for k, x in node.items():
                if k != "version":
                    walk(x, None)

    for attribute, frame_list in bank.get("frames", {}).items():
        walk(frame_list, attribute)
    walk({k: v for k, v in bank.items() if k != "frames"}, None)
    return tuple(sorted(frames, key=lambda f: (f[0], f[1] or "")))


@lru_cache(maxsize=1)
def connective_pieces() -> tuple[str, ...]:
    """Literal text of every frame (the words between placeholders)."""
    pieces = {p for f, _ in _frames() for p in _PLACEHOLDER.split(f) if p}
    return tuple(sorted(pieces, key=lambda p: (-len(p), p)))


# {surface} is what the user wrote ("您问的“{surface}”在知识库中对应{entity}"): it relates nothing to the
# entity, so any span may fill it, the question's own words included (\x03)
_SLOT = {"{vals}": "\x01", "{name}": "\x02", "{entity}": "\x02", "{surface}": "[\x01\x02\x03]",
         "{pred}": "(?P<pred>[^\x01\x02]{1,40}?)", "{n}": "[0-9]+", "{term}": "[^”]+"}


@lru_cache(maxsize=1)
def frame_patterns() -> tuple[tuple[re.Pattern, str | None], ...]:
    """Every trained frame as a pattern over a sentence skeleton (value runs -> \x01, names -> \x02), with
    the attribute the frame states (None: any)."""
    out = []
    for frame, attribute in _frames():
        # a value run absorbs a 等 that follows it (see _skeleton), so frames do too
        parts = re.split(r"(\{[a-z]+\})", frame.replace("{vals}等", "{vals}"))
        out.append((re.compile("".join(_SLOT.get(p, re.escape(p)) for p in parts if p)), attribute))
    return tuple(out)


@lru_cache(maxsize=1)
def _connective_text() -> str:
    return "\u0000".join(connective_pieces())


def is_connective(text: str) -> bool:
    """True when `text` is list glue or lies inside one trained frame's connective text."""
    t = text.strip()
    return not t or set(t) <= LIST_GLUE or t in _connective_text()


def residue(text: str) -> list[str]:
    """The parts of `text` no connective fragment (>= 2 characters) explains: the claim's own words."""
    lit, out, cur, i = _connective_text(), [], "", 0
    while i < len(text):
        j = i + 2
        best = 0
        while j <= len(text) and text[i:j] in lit:
            best = j
            j += 1
        if best:
            if cur:
                out.append(cur)
                cur = ""
            i = best
        else:
            cur += text[i]
            i += 1
    if cur:
        out.append(cur)
    return [r for r in (x.strip("".join(LIST_GLUE) + "。！？!?：:“”\"") for x in out) if r]


# --- the knowledge ------------------------------------------------------------------------------
def knowledge_facts(knowledge: dict) -> list[Fact]:
    return [Fact(e, p, v) for e, preds in (knowledge or {}).items() for p, vals in preds.items() for v in vals]


def _index(knowledge: dict, kb) -> _Index:
    from ktune.kb.linker import normalize

    idx = _Index()
    for fact in knowledge_facts(knowledge):
        for form in {fact.value.strip(), clean_value(fact.value)}:
            if form:
                idx.values.setdefault(form, [])
                if fact not in idx.values[form]:
                    idx.values[form].append(fact)
    for entity, preds in (knowledge or {}).items():
        idx.names.add(entity)
        idx.predicates.update(preds)
        if kb is not None:
            idx.names.update(aliases_of(kb, entity))
    mapping = _predicate_attribute(kb.schema if kb is not None else None)
    idx.attributes = {mapping[p] for p in idx.predicates if p in mapping}
    idx.predicates.update(idx.attributes)
    idx.norm_text = normalize(json.dumps(knowledge or {}, ensure_ascii=False))
    return idx


def _predicate_attribute(schema) -> dict[str, str]:
    """raw predicate -> attribute, from the KB's schema (the shipped one when no KB is given)."""
    return schema.predicate_attribute() if schema is not None else _shipped_mapping()


@lru_cache(maxsize=1)
def _shipped_mapping() -> dict[str, str]:
    from ktune.kb.schema import Schema

    return Schema.load().predicate_attribute()


_ALIASES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def aliases_of(kb, entity: str) -> list[str]:
    """The KB's aliases of `entity` (别称, 通用名, 商品名, derived generic names), as written in the KB."""
    linker = kb.linker
    reverse = _ALIASES.get(linker)
    if reverse is None:
        reverse = {}
        for surface, targets in linker.by_alias.items():
            for target, _ in targets:
                reverse.setdefault(target, []).append(surface)
        _ALIASES[linker] = reverse
    return reverse.get(entity, [])


def names_entity(kb, text: str, entities) -> bool:
    """True when `text` is a KB name or alias of one of `entities` (never by a fuzzy guess)."""
    if kb is None:
        return text in entities
    return any(link.entity in entities and link.method.split(":")[0] in SAME_ENTITY_METHODS + ("alias",)
               for link in kb.link(text, k=50))


# --- spans --------------------------------------------------------------------------------------
def _find_all(text: str, needle: str):
    start = text.find(needle)
    while start >= 0:
        yield start
        start = text.find(needle, start + 1)


def _spans(sentence: str, idx: _Index, one_char_anywhere: bool = False, question: str = "") -> list[_Span]:
    """Longest-first, non-overlapping: values, entity names (KB names and aliases), predicate names; with
    `question`, also the question's words the sentence repeats (kind "surface", the last resort)."""
    cands: list[tuple[str, str]] = [(v, "value") for v in idx.values]
    cands += [(n, "name") for n in idx.names]
    cands += [(p, "predicate") for p in idx.predicates]
    cands += [(q, "surface") for q in _shared_substrings(sentence, question)]
    taken = [False] * len(sentence)
    out: list[_Span] = []
    order = {"value": 0, "name": 1, "predicate": 2, "surface": 3}
    for text, kind in sorted(set(cands), key=lambda c: (c[1] == "surface", -len(c[0]), order[c[1]], c[0])):
        for s in _find_all(sentence, text):
            e = s + len(text)
            if any(taken[s:e]):
                continue
            if kind == "value" and len(text) == 1 and not one_char_anywhere:
                before = sentence[s - 1] if s else ""
                after = sentence[e] if e < len(sentence) else ""
                if before not in _ONE_CHAR_BEFORE or after not in _ONE_CHAR_AFTER:
                    continue
            taken[s:e] = [True] * (e - s)
            out.append(_Span(s, e, kind, text))
    return sorted(out, key=lambda sp: sp.start)


def _shared_substrings(sentence: str, question: str, min_len: int = 2) -> list[str]:
    """Maximal substrings (>= min_len) of `sentence` that the question also contains."""
    out, i = [], 0
    while question and i < len(sentence):
        j = i + min_len
        while j <= len(sentence) and sentence[i:j] in question:
            j += 1
        if j - 1 - i >= min_len:
            out.append(sentence[i:j - 1])
            i = j - 1
        else:
            i += 1
    return out


def split_sentences(body: str, knowledge: dict | None = None) -> list[str]:
    """Sentences of an answer body, never cutting inside a knowledge value (values can hold 。)."""
    protected = [False] * len(body)
    for v in sorted({clean_value(f.value) for f in knowledge_facts(knowledge or {})}, key=len, reverse=True):
        if len(v) > 1 and any(ch in v for ch in SENTENCE_END):
            for s in _find_all(body, v):
                protected[s:s + len(v)] = [True] * len(v)
    out, cur = [], ""
    for i, ch in enumerate(body):
        cur += ch
        if ch in SENTENCE_END and not protected[i]:
            if cur.strip():
                out.append(cur.strip())
            cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


# --- the check ----------------------------------------------------------------------------------
def check_sentence(sentence: str, knowledge: dict, question: str = "", kb=None) -> SentenceCheck:
    """Keep `sentence` only if every term it relates to the entity is a value or name of `knowledge`.

    `question` is used only to say why a term failed (a term only the question contains); it never
    supports a claim. `kb` (a KnowledgeBase) recognises the entity's aliases and KB names in the text;
    without it only the knowledge's own strings are recognised.
    """
    idx = _index(knowledge, kb)
    return _check(sentence, idx, question, kb)


def _check(sentence: str, idx: _Index, question: str, kb) -> SentenceCheck:
    text = sentence.strip()
    if is_connective(text):
        return SentenceCheck(text)
    spans = _spans(text, idx)
    as_values = tuple(sp.text for k, sp in enumerate(spans) if sp.kind == "predicate" and _in_list(text, spans, k))
    framed = spans if not as_values and _framed(text, spans, idx) else None
    if framed is None and not as_values:
        # second reading: one-character values anywhere (旋花根以根入药), and the question's own words where
        # a frame says what the user wrote ("您问的“{surface}”..."): only a whole-frame match accepts them
        relaxed = _spans(text, idx, one_char_anywhere=True, question=question)
        framed = relaxed if _framed(text, relaxed, idx) else None
    if framed is not None:
        facts = _facts(framed, idx)
        verbatim = sum(1 for sp in framed if sp.kind == "value")
        return SentenceCheck(text, facts, stated_values=verbatim, verbatim_values=verbatim)
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


def _facts(spans: list[_Span], idx: _Index) -> tuple[Fact, ...]:
    facts: list[Fact] = []
    for sp in spans:
        if sp.kind == "value":
            facts.extend(f for f in idx.values[sp.text] if f not in facts)
    return tuple(facts)


def _framed(text: str, spans: list[_Span], idx: _Index) -> bool:
    """Some trained frame reads the sentence, and a per-attribute frame only over that attribute's knowledge
    ("X含有{vals}" states 成份: over 不良反应 values it would be a new claim)."""
    if _doubled(text, spans):
        return False
    skeleton = _skeleton(text, spans)
    return any((attr is None or attr in idx.attributes) and _frame_match(p, skeleton, idx)
               for p, attr in frame_patterns())


def _doubled(text: str, spans: list[_Span]) -> bool:
    """A value whose first character the connective text right before it repeats (有有特殊的香气): the model
    wrote the start of the value twice, so what it states is not the value."""
    ends = {sp.end for sp in spans}
    return any(sp.kind == "value" and sp.start > 0 and sp.start not in ends and text[sp.start - 1] == sp.text[0]
               for sp in spans)


def _skeleton(text: str, spans: list[_Span]) -> str:
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
    return bool(between) and set(between) <= set("、；;，,和及与或 ")


def _frame_match(pattern: re.Pattern, skeleton: str, idx: _Index) -> bool:
    m = pattern.fullmatch(skeleton)
    if not m or "pred" not in m.groupdict():
        return bool(m)
    return all(p in idx.predicates for p in m.group("pred").split("和"))  # a premise verdict names several


def _in_list(text: str, spans: list[_Span], k: int) -> bool:
    """A predicate name written as a list item: a list separator right before or after it (a frame writes a
    predicate name only as a header, "X的药物治疗包括…", never between 、)."""
    sp = spans[k]
    before = text[sp.start - 1] if sp.start else ""
    after = text[sp.end] if sp.end < len(text) else ""
    return before in _LIST_SEP or after in _LIST_SEP


def _reason(terms: list[str], as_values, idx: _Index, question: str, kb) -> str:
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


def check_answer(body: str, knowledge: dict, question: str = "", kb=None, heads: bool = False) -> ClaimCheck:
    """`check_sentence` over every sentence of `body`; kept and dropped sentences in answer order. With `heads`,
    a dropped sentence's verified head (`Checker.head`) is kept in its place."""
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
    return ClaimCheck(tuple(kept), tuple(dropped))


# --- clauses: the check on a prefix of a sentence ------------------------------------------------
CLAUSE_END = "、；;，," + SENTENCE_END  # a clause ends right before one of these
HEAD_END = "。"  # what closes a head


class Checker:
    """The claim check bound to one knowledge and question (the knowledge's index is built once).

    Besides whole sentences it checks clauses: the text of a sentence up to a clause end (a list separator,
    a comma or a sentence end), closed with 。 ("X的不良反应：恶心、呕吐" of "X的不良反应：恶心、呕吐、头晕…").
    A clause is verified when, closed, it is a sentence the check keeps, it states at least one fact and it
    names no value twice (a repeated value is a model looping). Whether `text[:cut]` is verified depends on
    `text[:cut + 1]` only, so a stream can decide it as soon as the clause end arrives, and a sentence's head
    (its longest verified clause) can only grow as the sentence does."""

    def __init__(self, knowledge: dict, question: str = "", kb=None):
        self.idx = _index(knowledge, kb)
        self.question = question
        self.kb = kb

    def sentence(self, sentence: str) -> SentenceCheck:
        return _check(sentence, self.idx, self.question, self.kb)

    def clause(self, text: str, cut: int) -> SentenceCheck | None:
        """`text[:cut]` + 。 as a kept sentence, when `text[cut]` ends a clause and the clause is verified."""
        head = text[:cut]
        if not 0 < cut < len(text) or text[cut] not in CLAUSE_END or head[-1] in CLAUSE_END or head[-1].isspace():
            return None
        if not any(head.endswith(v) for v in self.idx.values):  # cheap: a verified clause ends with a value
            return None
        check = _check(head + HEAD_END, self.idx, self.question, self.kb)
        if not check.ok or not check.facts:
            return None
        values = [sp.text for sp in _spans(check.sentence, self.idx) if sp.kind == "value"]
        return check if len(values) == len(set(values)) else None

    def head(self, sentence: str) -> SentenceCheck | None:
        """The longest verified clause of `sentence` (closed with 。), or None."""
        for cut in range(len(sentence) - 1, 0, -1):
            check = self.clause(sentence, cut)
            if check is not None:
                return check
        return None


def negated(sentence: str) -> bool:
    """A sentence that says the KB does not list something (asserts no relation)."""
    return bool(NEGATION.search(sentence))
