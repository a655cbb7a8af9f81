"""A stage-3 answer while it is generated: what a stream may send (AnswerStream) and where generation may stop
(FailureStop), both promises about every continuation of the body (see ktune.pipeline.answer.ground)."""

from __future__ import annotations

import copy

from ktune.data.answers import clean_value
from ktune.pipeline.checker import CLAUSE_END, Checker
from ktune.pipeline.claim_spans import SENTENCE_END, knowledge_facts
from ktune.prompt import PROVENANCE_PREFIX


class AnswerStream:
    """The answer of a body still being generated, as far as no continuation can change it.

    `update(body so far)` returns the text newly settled. What it has returned, joined, is always a prefix of
    the answer text the stage produces for any continuation of the body (`ground`, or `unchecked` without the
    claim check), and it never holds an unchecked claim: a complete sentence is settled as the check leaves
    it (kept, cut to its verified head, or dropped); with `clauses`, the unfinished sentence's verified head
    (`checker.Checker.clause`) is settled too, clause by clause, so a listing streams value by value.

    What can still change is held back: a sentence end that may lie inside a knowledge value that holds
    one (`claim_spans.split_sentences` does not cut there), a body that may still become a provenance line, and
    anything once the body holds a newline (clean_body then works line by line; the stop token is a newline,
    so a body rarely has one). The rest comes with the final answer.
    """

    def __init__(self, knowledge: dict, question: str = "", kb=None, claim_check: bool = True, clauses: bool = True,
                 stop_at_failure: bool = True):
        self.checker = Checker(knowledge, question, kb) if claim_check else None
        self.clauses = clauses
        self.stop_at_failure = stop_at_failure
        # a sentence failed the check (complete, or unfinished with a value under a wrong field name): with
        # stop_at_failure the body ends there and nothing more settles
        self.failed = False
        self.protected = sorted({v for v in map(clean_value, (f.value for f in knowledge_facts(knowledge)))
                                 if len(v) > 1 and any(ch in v for ch in SENTENCE_END)})
        self.text = ""  # settled so far
        self._start = 0  # where the first unsettled sentence starts in the (left-stripped) body
        self._head = ""  # the settled part of that sentence
        self._next_cut = 1  # its next clause end to check
        self._frozen = False

    def update(self, body: str) -> str:
        if self._frozen:
            return ""
        text = body.lstrip()
        if "\n" in text or text.startswith(PROVENANCE_PREFIX):
            self._frozen = True
            return ""
        if PROVENANCE_PREFIX.startswith(text):  # nothing yet, or the start of a provenance-looking line
            return ""
        before = len(self.text)
        if self.checker is None:
            self._unchecked(text)
        else:
            self._checked(text)
        return self.text[before:]

    def _unchecked(self, text: str) -> None:
        """`unchecked` keeps the body as it is: all of it settles (up to the last sentence end without clauses)."""
        settled = text.rstrip() if self.clauses else text[:max(text.rfind(ch) for ch in SENTENCE_END) + 1]
        if len(settled) > len(self.text):
            self.text = settled

    def _checked(self, text: str) -> None:
        unsure = None
        i = self._start
        while i < len(text):
            if text[i] in SENTENCE_END:
                split = self._split(text, i)
                if split is None:
                    unsure = i
                    break
                if split:
                    self._settle(text[self._start:i + 1].strip())
                    self._start = i + 1
                    if self._frozen:
                        return
            i += 1
        unfinished = text[self._start:unsure]
        if self.stop_at_failure and (self.checker.wrong_field(unfinished) or self.checker.dead(unfinished)):
            self.failed = self._frozen = True  # the sentence cannot pass: it ends the body (head settled so far)
            return
        if not self.clauses:
            return
        rest = text[self._start:]
        tail = rest.lstrip()
        limit = len(tail) if unsure is None else unsure - self._start - (len(rest) - len(tail))
        best = None
        for cut in range(self._next_cut, limit):
            if tail[cut] in CLAUSE_END and self.checker.clause(tail, cut) is not None:
                best = cut
        self._next_cut = max(self._next_cut, limit)
        if best is not None:
            self.text += tail[len(self._head):best]
            self._head = tail[:best]

    def _split(self, text: str, i: int) -> bool | None:
        """Does the sentence end at text[i] split the body (True), lie inside a value (False), or is it not
        known yet because a value holding it may be still being written (None)?"""
        unsure = False
        for v in self.protected:
            for offset, ch in enumerate(v):
                start = i - offset
                if ch != text[i] or start < 0:
                    continue
                written = text[start:start + len(v)]
                if written == v:
                    return False
                unsure = unsure or v.startswith(written)
        return None if unsure else True

    def _settle(self, sentence: str) -> None:
        if sentence:
            check = self.checker.sentence(sentence)
            head = None if check.ok else self.checker.head(check.sentence)
            final = check.sentence if check.ok else head.sentence if head is not None else ""
            if not final.startswith(self._head):  # cannot happen: a head only grows (checker.Checker)
                raise AssertionError(f"settled {self._head!r} is not a prefix of {final!r}")
            self.text += final[len(self._head):]
            if not check.ok and self.stop_at_failure:  # `ground` uses nothing after it: neither may the stream
                self.failed = self._frozen = True
        self._head = ""
        self._next_cut = 1


class FailureStop:
    """A decoder RowStop: a row is done once a complete sentence of its body fails the claim check, or an
    unfinished one cannot become one the check keeps (AnswerStream.failed; `ground` with stop_at_failure uses
    nothing after it, so the answer is the same as generating to the end). `ends[row]`: the tokens of the row's
    body when its stream failed, found token by token, so the body is the same however many tokens a decoding
    round accepted at once (a batch and a single question give the same raw body).

    `would_stop(row, tokens)` asks the same of tokens not yet verified (a decoder's drafts) without recording
    anything: the decoder then verifies at once instead of drafting on past a sentence that is already lost."""

    def __init__(self, streams: list[AnswerStream], tokenizer):
        self.streams, self.tokenizer = streams, tokenizer
        self.ends: list[int | None] = [None] * len(streams)
        self._seen = [0] * len(streams)
        self._probes: dict[int, tuple[list[int], AnswerStream]] = {}  # row -> the drafts read so far, their stream

    def __call__(self, row: int, tokens: list[int]) -> bool:
        stream = self.streams[row]
        for n in range(min(self._seen[row], len(tokens)) + 1, len(tokens) + 1):
            if self.ends[row] is not None:
                break
            stream.update(self._text(tokens[:n]))
            if stream.failed:
                self.ends[row] = n
        self._seen[row] = len(tokens)
        self._probes.pop(row, None)
        return stream.failed

    def would_stop(self, row: int, tokens: list[int]) -> bool:
        """Would the row stop within `tokens` (its verified tokens, then drafts)? Read on a copy of its stream."""
        if self.streams[row].failed:
            return True
        read, probe = self._probes.get(row, ([], None))
        if probe is None or tokens[:len(read)] != read or len(read) < self._seen[row]:
            read, probe = tokens[:self._seen[row]], copy.copy(self.streams[row])  # its fields are values
        for n in range(len(read) + 1, len(tokens) + 1):
            probe.update(self._text(tokens[:n]))
            if probe.failed:
                break
        self._probes[row] = (list(tokens), probe)
        return probe.failed

    def rows(self, group: list[int]) -> _Rows:
        """This stop for a decoder call over some of its rows (the call's row r is row group[r] here)."""
        return _Rows(self, group)

    def _text(self, tokens: list[int]) -> str:
        # a character split across tokens decodes to U+FFFD until it is whole
        return self.tokenizer.decode(tokens, skip_special_tokens=True).rstrip("\ufffd")


class _Rows:
    """FailureStop.rows: the stop of a call that decodes a subset of the rows."""

    def __init__(self, stop: FailureStop, group: list[int]):
        self.stop, self.group = stop, group

    def __call__(self, row: int, tokens: list[int]) -> bool:
        return self.stop(self.group[row], tokens)

    def would_stop(self, row: int, tokens: list[int]) -> bool:
        return self.stop.would_stop(self.group[row], tokens)
