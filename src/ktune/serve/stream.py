"""Answer streaming: a transformers streamer that turns one answer batch's tokens into settled answer text.

`generate()` hands the streamer the prompt ids once, then each step's next token for every row (finished rows
get the pad id). Each row's body is decoded as it grows and fed to its `AnswerStream`
(`ktune.pipeline.answer`), which says what of the answer is settled: complete sentences as the claim check
leaves them and, streaming by clause, the verified head of the sentence being written (value by value in a
listing). Settled text goes to the row's sink. It is never an unchecked claim and always a prefix of the final
answer (the rest, with the provenance line, comes with the final event).

The streamer is also where a batch can be stopped early: `put()` raises `GenerationStopped` when every row's
client has gone (or the server is shutting down), which ends `generate()` at the next token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ktune.pipeline.answer_stream import AnswerStream


class GenerationStopped(Exception):
    """Raised from the streamer to end a batch's generation: nobody waits for it any more."""


@dataclass
class RowStream:
    """One answer being generated: its token cap, what of it is settled, where settled text goes."""

    answer: AnswerStream | None
    cap: int
    sink: Callable[[str], None] | None = None  # called with each piece of settled text, in the worker thread
    tokens: list[int] = field(default_factory=list)
    ended: bool = False  # the model stopped (stop/EOS) or the cap was reached
    capped: bool = False  # ended by the cap, not by the model: finish_reason "length"


class AnswerStreamer:
    """The transformers streamer protocol (`put`, `end`) for a batch of answers (rows in batch order), and
    `put_row` for a decoder that streams each row's tokens on their own (ktune.pipeline.decode's draft-and-verify)."""

    def __init__(self, tokenizer, end_ids, pad_id: int, rows: list[RowStream],
                 should_stop: Callable[[], bool] = lambda: False):
        self.tokenizer = tokenizer
        self.end_ids = set(end_ids)
        self.pad_id = pad_id
        self.rows = rows
        self.should_stop = should_stop
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first call carries the prompts (batch x prompt length)
            self._prompt_seen = True
            return
        if self.should_stop():
            raise GenerationStopped()
        tokens = value.reshape(-1).tolist()
        # generate() puts one token per row; draft-and-verify (one row) its newly verified tokens together
        pairs = [(self.rows[0], t) for t in tokens] if len(self.rows) == 1 else zip(self.rows, tokens, strict=True)
        for row, token in pairs:
            self._take(row, token)

    def put_row(self, index: int, tokens: list[int]) -> None:
        """Newly verified tokens of one row (draft-and-verify over a batch streams row by row)."""
        if self.should_stop():
            raise GenerationStopped()
        for token in tokens:
            self._take(self.rows[index], token)

    def _take(self, row: RowStream, token: int) -> None:
        if row.ended:
            return
        if token in self.end_ids or token == self.pad_id:
            row.ended = True
            return
        row.tokens.append(token)
        if len(row.tokens) >= row.cap:
            row.ended = row.capped = True
        if row.sink is not None and row.answer is not None:
            self._send(row)

    def end(self) -> None:
        """Nothing to flush: what is not settled yet comes with the final answer."""

    def _send(self, row: RowStream) -> None:
        # a character split across tokens decodes to U+FFFD until its last byte arrives
        text = row.answer.update(self.tokenizer.decode(row.tokens, skip_special_tokens=True).rstrip("\ufffd"))
        if text:
            row.sink(text)
