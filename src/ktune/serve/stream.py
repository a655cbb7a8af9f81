"""Answer streaming: a transformers streamer that turns one answer batch's tokens into text, sentence by sentence.

`generate()` hands the streamer the prompt ids once, then each step's next token for every row (finished rows
get the pad id). Each row's text is decoded as it grows and cleaned as the final answer is
(`ktune.pipeline.answer.clean_body`); every sentence that is complete goes through the answer stage's
`finish_sentence` hook and on to the row's sink. Sentences, not tokens: a per-sentence check can then run before
anything reaches the user, and the streamed text is always a prefix of the final answer (the rest, with the
provenance line, comes with the final event).

The streamer is also where a batch can be stopped early: `put()` raises `GenerationStopped` when every row's
client has gone (or the server is shutting down), which ends `generate()` at the next token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ktune.pipeline.answer import clean_body, split_sentences


class GenerationStopped(Exception):
    """Raised from the streamer to end a batch's generation: nobody waits for it any more."""


@dataclass
class RowStream:
    """One answer being generated: its token cap, where its sentences go, what has been sent."""

    knowledge: dict
    cap: int
    sink: Callable[[str], None] | None = None  # called with each finished sentence, in the worker thread
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # complete sentences sent so far
    ended: bool = False  # the model stopped (stop/EOS) or the cap was reached
    capped: bool = False  # ended by the cap, not by the model: finish_reason "length"


class AnswerStreamer:
    """The transformers streamer protocol (`put`, `end`) for a batch of answers (rows in batch order)."""

    def __init__(self, tokenizer, end_ids, pad_id: int, finish_sentence, rows: list[RowStream],
                 should_stop: Callable[[], bool] = lambda: False):
        self.tokenizer = tokenizer
        self.end_ids = set(end_ids)
        self.pad_id = pad_id
        self.finish_sentence = finish_sentence
        self.rows = rows
        self.should_stop = should_stop
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first call carries the prompts (batch x prompt length)
            self._prompt_seen = True
            return
        if self.should_stop():
            raise GenerationStopped()
        for row, token in zip(self.rows, value.reshape(-1).tolist(), strict=True):
            if row.ended:
                continue
            if token in self.end_ids or token == self.pad_id:
                row.ended = True
                continue
            row.tokens.append(token)
            if len(row.tokens) >= row.cap:
                row.ended = row.capped = True
            if row.sink is not None:
                self._send(row)

    def end(self) -> None:
        """Nothing held back: the unfinished last sentence is sent with the final answer."""

    def _send(self, row: RowStream) -> None:
        done, _rest = split_sentences(clean_body(self.tokenizer.decode(row.tokens, skip_special_tokens=True)))
        for sentence in done[row.sent:]:
            row.sink(self.finish_sentence(sentence, row.knowledge))
        row.sent = len(done)
