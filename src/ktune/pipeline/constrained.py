"""A transformers LogitsProcessor that keeps every generated query inside the KB query grammar."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from ktune.pipeline.trie import QueryGrammar


class QueryConstraintProcessor(LogitsProcessor):
    """Masks every token that would leave the grammar (entity trie -> separator -> attribute -> stop).

    `prompt_len` is the (left-padded) prompt length: generated tokens are `input_ids[:, prompt_len:]`.
    Rows whose query is complete (or that cannot continue) may only emit the end tokens, so a finished
    beam or a padded row can never grow into an invalid key.
    """

    def __init__(self, grammar: QueryGrammar, prompt_len: int, end_token_ids: list[int],
                 forced: list[list[int]] | None = None):
        self.grammar = grammar
        self.prompt_len = prompt_len
        self.forced = forced  # per row: query tokens already placed at the end of the prompt (oracle entity)
        self.end_ids = tuple(dict.fromkeys(end_token_ids))
        self._index_cache: dict[tuple[int, ...], torch.Tensor] = {}

    def _index(self, allowed: tuple[int, ...], device) -> torch.Tensor:
        idx = self._index_cache.get(allowed)
        if idx is None:
            idx = torch.tensor(allowed, dtype=torch.long)
            if len(self._index_cache) < 4096:
                self._index_cache[allowed] = idx
        return idx.to(device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len :].tolist()
        masked = torch.full_like(scores, float("-inf"))
        for row, tokens in enumerate(generated):
            state = self.grammar.walk(self.forced[row] + tokens if self.forced else tokens)
            allowed = state.allowed if state.allowed is not None else self.end_ids
            idx = self._index(allowed, scores.device)
            masked[row, idx] = scores[row, idx]
        return masked
