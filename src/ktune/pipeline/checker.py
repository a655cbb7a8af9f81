"""The claim check on a sentence still being written: its verified clauses (a stream sends them) and whether it
can still become a sentence the check keeps (a stream ends the body when it cannot). See ktune.pipeline.claims
for the check on whole sentences."""

from __future__ import annotations

import re

from ktune.pipeline.claim_frames import is_connective, prefix_patterns
from ktune.pipeline.claim_spans import SENTENCE_END, _find_all, find_spans, index_knowledge
from ktune.pipeline.claims import _GLUE_CHARS, _LIST_SEP, SentenceCheck, _check, _skeleton

# --- clauses: the check on a prefix of a sentence ------------------------------------------------
CLAUSE_END = "、；;，," + SENTENCE_END  # a clause ends right before one of these
HEAD_END = "。"  # what closes a head
FIELD_COLON = re.compile(r"[：:]")  # a field name's colon before its values ("X的不良反应：恶心")
FIELD_VALUE_END = re.compile(r"[：:、；;，,。！？!?]")  # what ends the first value after it


class Checker:
    """The claim check bound to one knowledge and question (the knowledge's index is built once).

    Besides whole sentences it checks clauses: the text of a sentence up to a clause end (a list separator,
    a comma or a sentence end), closed with 。 ("X的不良反应：恶心、呕吐" of "X的不良反应：恶心、呕吐、头晕…").
    A clause is verified when, closed, it is a sentence the check keeps, it states at least one fact and it
    names no value twice (a repeated value is a model looping). Whether `text[:cut]` is verified depends on
    `text[:cut + 1]` only, so a stream can decide it as soon as the clause end arrives, and a sentence's head
    (its longest verified clause) can only grow as the sentence does."""

    def __init__(self, knowledge: dict, question: str = "", kb=None):
        self.idx = index_knowledge(knowledge, kb)
        self.question = question or ""
        self.kb = kb
        # the KB schema's field names, longest first, and those this knowledge does not have (wrong_field)
        own = self.idx.predicates | self.idx.attributes
        self.fields = [] if kb is None else sorted(
            {p for a in kb.schema.attributes.values() for p in (a.name, *a.predicates)} | own, key=len, reverse=True)
        self.foreign = {p for p in self.fields if p not in own}
        self._verdicts: dict[tuple[str, bool], bool] = {}  # dead(): each head read (and how) -> its verdict
        # the longest string a span can be (the second reading's question words included): text more than this far
        # before the end is read as any continuation reads it
        self._longest = max(map(len, [*self.idx.values, *self.idx.names, *self.idx.predicates, question or ""]))
        self._strings = [s for s in {*self.idx.values, *self.idx.names, *self.idx.predicates} if len(s) > 1]
        self._prefixes = {s[:n] for s in {*self.idx.values, *self.idx.names, *self.idx.predicates}
                          for n in range(1, len(s) + 1)}  # what the end of a text may still grow from


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
        values = [sp.text for sp in find_spans(check.sentence, self.idx) if sp.kind == "value"]
        return check if len(values) == len(set(values)) else None

    def wrong_field(self, text: str) -> bool:
        """`text`, an unfinished sentence, lists a value of the knowledge under a field name the knowledge does not
        have ("X的用法用量：不适、" when 不适 is one of X's 不良反应; the value must be complete, a separator after
        it): no continuation can make that sentence one the check keeps, so a stream may end the body there."""
        for colon in FIELD_COLON.finditer(text):
            parts = FIELD_VALUE_END.split(text[colon.end():], maxsplit=1)
            if len(parts) < 2 or parts[0] not in self.idx.values:
                continue
            field = next((p for p in self.fields if text[:colon.start()].endswith(p)), None)  # the longest name
            if field in self.foreign:
                return True
        return False

    def dead(self, text: str) -> bool:
        """`text`, an unfinished sentence, can no longer become one the check keeps: no trained frame over this
        knowledge reads a settled beginning of it as a frame's beginning, under either reading of its spans. A
        beginning is settled when it ends with a complete value that a list separator follows ("盐酸二甲双胍的不良反应
        包括不适、" when the entity is 盐酸二甲双胍片, "X可用于：恶心、" over 不良反应 values), or at the last place no
        continuation can read differently (`_settled_cut`: "根据知识库，X可用于治疗" over 不良反应 values is dead at 治疗,
        which begins no value; a model looping on a name or a field, "X片中的X片中的…", "X中的药物分类：药物分类：…",
        lists no value). A frame that reads the whole sentence reads each of its beginnings, so a stream may end the
        body there (as for wrong_field)."""
        text = text.lstrip()
        listed = self._listed_cut(text)
        if listed and self._dead_before(text[:listed + 1], listed):
            return True
        settled = self._settled_cut(text)
        return settled > listed and self._dead_before(text, settled)

    def _listed_cut(self, text: str) -> int:
        """The end of the last complete value that a list separator follows in `text` (0: none)."""
        return next((i for i in range(len(text) - 1, 0, -1) if text[i] in _LIST_SEP
                     and any(text.endswith(v, 0, i) for v in self.idx.values)), 0)

    def _settled_cut(self, text: str) -> int:
        """The last place in `text` before which no continuation can change how `text` reads (0: none): no occurrence
        of a span's string crosses it (of either reading: values, names, field names, words of the question), it lies
        at or before the first place from which the end of `text` may still grow into a span, and not right after
        list glue (a value run may still absorb it). Spans left of it are then the spans any continuation has."""
        crossed = self._crossed(text)
        return next((i for i in range(self._growing(text), 0, -1)
                     if i not in crossed and text[i - 1] not in _GLUE_CHARS), 0)

    def _growing(self, text: str) -> int:
        """The first place from which the end of `text` is the beginning of a span's string (len(text): none)."""
        for k in range(max(0, len(text) - self._longest), len(text)):
            tail = text[k:]
            if tail in self._prefixes or tail in self.question:
                return k
        return len(text)

    def _crossed(self, text: str) -> set[int]:
        """Places inside an occurrence in `text` of a span's string (a question word: any two characters the
        question holds)."""
        out = {i for i in range(1, len(text)) if text[i - 1:i + 1] in self.question}
        for string in self._strings:
            for start in _find_all(text, string):
                out.update(range(start + 1, start + len(string)))
        return out

    def _dead_before(self, text: str, cut: int) -> bool:
        """No frame over this knowledge begins as `text[:cut]` does, read with the spans of `text` up to `cut`."""
        head = text[:cut]
        if is_connective(head):
            return False
        key = (head, len(text) > cut + 1)
        if key not in self._verdicts:
            patterns = prefix_patterns(frozenset(self.idx.predicates), frozenset(self.idx.attributes))
            self._verdicts[key] = True
            for relaxed in (False, True):
                # spans read with what follows them (a one-character value needs its neighbours), kept up to the cut
                spans = find_spans(text, self.idx, one_char_anywhere=relaxed, question=self.question if relaxed else "")
                if any(sp.start < cut < sp.end for sp in spans):
                    self._verdicts[key] = False  # this reading is not settled at the cut
                    break
                skeleton = _skeleton(head, [sp for sp in spans if sp.end <= cut])
                if any(p.fullmatch(skeleton, partial=True) for p in patterns):
                    self._verdicts[key] = False
                    break
        return self._verdicts[key]

    def head(self, sentence: str) -> SentenceCheck | None:
        """The longest verified clause of `sentence` (closed with 。), or None."""
        for cut in range(len(sentence) - 1, 0, -1):
            check = self.clause(sentence, cut)
            if check is not None:
                return check
        return None
