"""Batched greedy decoding, one set of rules for every stage: prompts encoded as in training, left-padded, cut at the
first end token (the last token of the stop string, or EOS) or pad.

`GreedyDecoder` is what training's generation check (ktune.train.generation), the eval-only systems (oracle
entity, instruction baseline) and the pipeline decode with; ktune.pipeline.decode.Decoder extends it with the
KB grammar, beams and draft-and-verify. It lives below ktune.train so that training and the pipeline share it
without training importing the pipeline.
"""

from __future__ import annotations

import torch
from torch import nn

from ktune.prompt import PromptFormat, encode_pieces
from ktune.query_vocab import with_head


class GreedyDecoder:
    """Wraps a causal LM + tokenizer; prompts are encoded by the run's PromptFormat.encode_prompt, as in training.

    `head`: decode through this output head instead of the model's own (ktune.query_vocab.with_head: a view;
    the shared model is never changed).
    """

    def __init__(self, model, tokenizer, prompt_format: PromptFormat, head: nn.Module | None = None):
        self.base_model = model
        self.model = with_head(model, head)
        self.head = head
        self.tokenizer = tokenizer
        self.fmt = prompt_format
        self.stop_ids = encode_pieces(tokenizer, [prompt_format.stop])
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
        return self._pad(ids)

    def _pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
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

    def generate_ids(self, input_ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, **kwargs) -> list[list[int]]:
        """Greedy continuations (token ids after the prompt, pad-filled after the end) of a left-padded batch,
        through generate() with the decoder's end and pad tokens; `kwargs` go to generate()."""
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                  do_sample=False, num_beams=1, eos_token_id=self.end_ids, pad_token_id=self.pad_id,
                                  **kwargs)
        return out[:, input_ids.shape[1] :].tolist()

    @torch.inference_mode()
    def texts(self, prompts: list[str], max_new_tokens: int, *, forced: list[list[int]] | None = None,
              batch_size: int = 16) -> list[str]:
        """Greedy continuation text per prompt, cut at the stop string, decoded `batch_size` prompts at a time;
        `forced` token ids are placed after each prompt (the continuation follows them)."""
        out: list[str] = []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            input_ids, mask = self.encode_prompts(prompts[chunk], forced[chunk] if forced else None)
            for row in self.generate_ids(input_ids, mask, max_new_tokens):
                out.append(self._text(row)[0].split(self.fmt.stop, 1)[0])
        return out
