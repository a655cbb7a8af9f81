"""Batched decoding helpers: left-padded prompts, stop at the newline, free or grammar-constrained."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ktune.pipeline.constrained import QueryConstraintProcessor
from ktune.pipeline.trie import QueryGrammar, encode_piece


@dataclass(frozen=True)
class Beam:
    text: str  # the generated text up to (not including) the stop
    tokens: tuple[int, ...]
    score: float  # length-normalised log-probability (0.0 for greedy)


class Decoder:
    """Wraps a causal LM + tokenizer; prompts are encoded by the run's PromptFormat.encode_prompt, as in training."""

    def __init__(self, model, tokenizer, prompt_format):
        self.model = model
        self.tokenizer = tokenizer
        self.fmt = prompt_format
        self.stop_ids = encode_piece(tokenizer, prompt_format.stop)
        eos = tokenizer.eos_token_id
        self.end_ids = [self.stop_ids[-1]] + ([eos] if eos is not None else [])
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (eos if eos is not None else 0)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def encode_prompts(self, prompts: list[str], forced: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded input ids and attention mask; `forced` token ids are appended to each prompt."""
        ids = [self.fmt.encode_prompt(self.tokenizer, p) for p in prompts]
        if forced:
            ids = [x + f for x, f in zip(ids, forced, strict=True)]
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _text(self, tokens: list[int]) -> tuple[str, tuple[int, ...]]:
        out = []
        for t in tokens:
            if t in self.end_ids or t == self.pad_id:
                break
            out.append(t)
        return self.tokenizer.decode(out, skip_special_tokens=True), tuple(out)

    @torch.inference_mode()
    def greedy(self, prompts: list[str], max_new_tokens: int, grammar: QueryGrammar | None = None,
               forced: list[list[int]] | None = None, streamer=None) -> list[Beam]:
        """One greedy continuation per prompt, cut at the stop; under `grammar` when given (which then also
        sees the `forced` query tokens placed after each prompt). `streamer` (a transformers streamer) gets
        the prompt ids, then each step's tokens for the whole batch."""
        input_ids, mask = self.encode_prompts(prompts, forced)
        processors = self._processors(grammar, input_ids.shape[1], forced)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=self.end_ids,
            pad_token_id=self.pad_id,
            logits_processor=processors,
            streamer=streamer,
        )
        gen = out[:, input_ids.shape[1] :].tolist()
        return [Beam(*self._text(row), 0.0) for row in gen]

    @torch.inference_mode()
    def beams(self, prompts: list[str], max_new_tokens: int, grammar: QueryGrammar, num_beams: int) -> list[list[Beam]]:
        """All `num_beams` constrained beams per prompt, best first (length-normalised log-prob)."""
        input_ids, mask = self.encode_prompts(prompts)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            early_stopping=True,
            eos_token_id=self.end_ids,
            pad_token_id=self.pad_id,
            logits_processor=self._processors(grammar, input_ids.shape[1]),
            return_dict_in_generate=True,
            output_scores=True,
        )
        gen = out.sequences[:, input_ids.shape[1] :].tolist()
        scores = out.sequences_scores.tolist()
        result = []
        for i in range(len(prompts)):
            rows = range(i * num_beams, (i + 1) * num_beams)
            result.append([Beam(*self._text(gen[r]), float(scores[r])) for r in rows])
        return result

    def _processors(self, grammar, prompt_len, forced=None):
        from transformers import LogitsProcessorList

        if grammar is None:
            return LogitsProcessorList()
        return LogitsProcessorList([QueryConstraintProcessor(grammar, prompt_len, self.end_ids, forced)])
