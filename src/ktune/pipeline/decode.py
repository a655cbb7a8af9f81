"""Batched decoding helpers: left-padded prompts, stop at the newline, free or grammar-constrained.

Full-vocabulary greedy decoding (stage 3's answers) runs draft-and-verify when the decoder has a draft
vocabulary (`draft_ids`): each step applies the LM head only to the draft rows (the answer phrasing, plus
every token of the prompts, which hold the question and the knowledge), and every few steps the whole head
checks the drafted tokens from the hidden states already computed, in one matrix product for all of them
(one read of the 262k-row head per chunk instead of per token). The first token the whole head would have
chosen differently replaces the draft, and decoding restarts from there. The output is the full-vocabulary
greedy output; only where a draft is wrong does it cost a second prefill.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ktune.decoding import GreedyDecoder
from ktune.pipeline.constrained import QueryConstraintProcessor
from ktune.pipeline.trie import QueryGrammar
from ktune.query_vocab import SubsetHead, head_logits, output_embeddings_owner, with_head

# Generation settings that change greedy logits, with their neutral values (a model's generation_config may set
# them): with any of them set, full-vocabulary greedy runs through generate(), which applies them.
LOGIT_SETTINGS = {"repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                  "min_new_tokens": 0, "min_length": 0, "bad_words_ids": None, "suppress_tokens": None,
                  "begin_suppress_tokens": None, "sequence_bias": None, "forced_bos_token_id": None,
                  "forced_eos_token_id": None, "exponential_decay_length_penalty": None}
VERIFY_EVERY = 16  # drafted tokens checked per whole-head product: fewer wasted steps after a miss vs head reads
# Replaced drafts per row after which a call decodes with the whole head at every step (as generate() does): a
# model whose answers leave the draft vocabulary would otherwise pay a cut and re-feed for most chunks.
MAX_REJECTED_PER_ROW = 4
# An early stop per row: (row index in the call, the row's tokens so far) -> True when the row is done. One with a
# `would_stop(row, tokens)` of the same signature (no side effects) is also asked about unverified drafts, so a row
# that drafts its own end is verified then, not VERIFY_EVERY drafts later (ktune.pipeline.answer_stream.FailureStop).
RowStop = Callable[[int, list[int]], bool]


@dataclass(frozen=True)
class Beam:
    text: str  # the generated text up to (not including) the stop
    tokens: tuple[int, ...]
    score: float  # length-normalised log-probability (0.0 for greedy)


@dataclass
class DraftStats:
    """What draft-and-verify did in one call (for benchmarks and logs)."""

    tokens: int = 0  # tokens accepted
    drafted: int = 0  # tokens drafted with the subset head
    rejected: int = 0  # drafts the whole head replaced (each costs a restart)
    rounds: int = 0  # prefills (1 + restarts, per batch)
    rows: list[int] = field(default_factory=list)  # draft vocabulary size per round
    whole_head: bool = False  # too many drafts were replaced: the rest was decoded with the whole head


class Decoder(GreedyDecoder):
    """The pipeline's decoder: ktune.decoding.GreedyDecoder (same prompts, padding, end and pad tokens) plus the
    KB grammar, beams, streaming and draft-and-verify.

    `head`: decode through this output head instead of the model's own (ktune.query_vocab.with_head: a view;
    the shared model is never changed). `draft_ids`: the draft vocabulary for full-vocabulary greedy decoding
    (see the module docstring); None decodes with generate() only.
    """

    def __init__(self, model, tokenizer, prompt_format, head: nn.Module | None = None,
                 draft_ids: list[int] | None = None):
        super().__init__(model, tokenizer, prompt_format, head)
        self.draft_ids = None if draft_ids is None else sorted({*draft_ids, *self.end_ids, self.pad_id})
        self.lookup = 0  # prompt-lookup draft length for single ungrammared prompts (see with_head)

    def with_head(self, head: nn.Module | None, lookup: int = 0) -> Decoder:
        """The same decoder seen through another output head (no draft-and-verify: the head is the choice).
        `lookup` > 0: a single prompt without a grammar decodes with prompt-lookup drafts of that many tokens
        (generate(prompt_lookup_num_tokens=...): a query mostly copies the entity from the question, so several
        tokens are checked per forward; greedy output unchanged)."""
        decoder = Decoder(self.base_model, self.tokenizer, self.fmt, head)
        decoder.lookup = lookup
        return decoder

    @torch.inference_mode()
    def greedy(self, prompts: list[str], max_new_tokens: int, grammar: QueryGrammar | None = None,
               forced: list[list[int]] | None = None, streamer=None, stop: RowStop | None = None) -> list[Beam]:
        """One greedy continuation per prompt, cut at the stop; under `grammar` when given (which then also
        sees the `forced` query tokens placed after each prompt). `streamer` (a transformers streamer) gets
        the prompt ids, then each step's tokens for the whole batch (one prompt: its verified tokens as they are
        accepted; a streamer with `put_row` gets each row's verified tokens); free decoding drafts and verifies
        (same tokens, see draft_and_verify), a batch with a plain streamer runs through generate().
        `stop(row, tokens)`: True ends that row early (its continuation so far is a prefix of the unstopped one)."""
        rows_streamed = streamer is None or len(prompts) == 1 or hasattr(streamer, "put_row")
        if grammar is None and not forced and rows_streamed and self.can_draft():
            ids = [self.fmt.encode_prompt(self.tokenizer, p) for p in prompts]
            rows = self.draft_and_verify(ids, max_new_tokens, streamer=streamer, stop=stop)
            return [Beam(*self._text(row), 0.0) for row in rows]
        input_ids, mask = self.encode_prompts(prompts, forced)
        processors = self._processors(grammar, input_ids.shape[1], forced)
        extra = {}
        if self.lookup and len(prompts) == 1 and grammar is None and streamer is None:
            extra["prompt_lookup_num_tokens"] = self.lookup
        if stop is not None:
            extra["stopping_criteria"] = _stopping_criteria(stop, input_ids.shape[1], set(self.end_ids) | {self.pad_id})
        gen = self.generate_ids(input_ids, mask, max_new_tokens, logits_processor=processors, streamer=streamer,
                                **extra)
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

    # --- draft-and-verify full-vocabulary greedy ------------------------------------------------
    def can_draft(self) -> bool:
        """Draft-and-verify applies: a draft vocabulary, the model's own head, a plain nn.Linear head, and no
        generation setting that changes greedy logits."""
        if self.draft_ids is None or self.head is not None or output_embeddings_owner(self.base_model) is None:
            return False
        gen = getattr(self.base_model, "generation_config", None)
        return all(getattr(gen, name, None) in (None, neutral) for name, neutral in LOGIT_SETTINGS.items())

    def draft_and_verify(self, prompts: list[list[int]], max_new_tokens: int, streamer=None,
                         stats: DraftStats | None = None, stop: RowStop | None = None) -> list[list[int]]:
        """Greedy continuations (token ids, ending with the end token when one is produced) of encoded prompts:
        exactly the tokens greedy decoding with the whole head gives, computed as the module docstring says.
        `stats`: filled with what the call did."""
        if streamer is not None and len(prompts) != 1 and not hasattr(streamer, "put_row"):
            raise ValueError("a streamer follows one prompt; decode a batch without one (or give it put_row)")
        stats = stats if stats is not None else DraftStats()
        accepted: list[list[int]] = [[] for _ in prompts]
        todo = list(range(len(prompts)))
        if streamer is not None and len(prompts) == 1:
            streamer.put(torch.tensor([prompts[0]], dtype=torch.long))
        while todo:
            stats.rounds += 1
            self._round(todo, prompts, accepted, max_new_tokens, stats, streamer, stop)
            todo = [i for i in todo if not self._finished(accepted, i, max_new_tokens, stop)]
        if streamer is not None:
            streamer.end()
        stats.tokens += sum(map(len, accepted))
        return accepted

    def _finished(self, accepted: list[list[int]], i: int, max_new_tokens: int, stop: RowStop | None) -> bool:
        tokens = accepted[i]
        return (len(tokens) >= max_new_tokens or bool(tokens and tokens[-1] in self.end_ids)
                or (stop is not None and stop(i, tokens)))

    def _round(self, todo, prompts, accepted, max_new_tokens, stats: DraftStats, streamer, stop=None) -> None:
        """One prefill of prompt + accepted tokens for the rows in `todo`, then drafting until every row ends or
        reaches max_new_tokens. After a replaced draft the KV cache is cut back to the last verified token
        (every row alike; rows that lose verified tokens feed them again); where the cache cannot be cut, the
        row leaves the round and restarts in the next one."""
        n = len(todo)
        probe = getattr(stop, "would_stop", None)  # drafts that already end the row are verified at once
        seqs = [prompts[i] + accepted[i] for i in todo]
        head = SubsetHead(self._full_head(), sorted({*self.draft_ids, *(t for s in seqs for t in s)}))
        stats.rows.append(int(head.index.numel()))
        # whole: decode with the whole head (every output final, nothing to verify) after too many replaced drafts
        whole = stats.whole_head = stats.whole_head or stats.rejected > MAX_REJECTED_PER_ROW * n
        recorder = _Recorder(self._full_head() if whole else head)
        lm = with_head(self.base_model, recorder)
        input_ids, mask = self._pad(seqs)
        position = (mask.cumsum(-1) - 1).clamp(min=0)
        padded = not bool(mask.all())  # generate() drops an all-ones mask; so do we (same attention kernels)
        cache_key = "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"
        kwargs = {"attention_mask": mask if padded else None, "position_ids": position, "use_cache": True}
        out = lm(input_ids=input_ids, logits_to_keep=1, **kwargs)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        base = [len(accepted[i]) for i in todo]  # accepted tokens already in the cache (the prefill)
        fed: list[list[int]] = [[] for _ in todo]  # tokens fed after the prefill (their K/V are in the cache)
        feed: list[list[int]] = [[] for _ in todo]  # tokens to feed next: the latest draft, or verified ones
        pending: list[list[tuple[int, torch.Tensor]]] = [[] for _ in todo]  # drafts not yet verified
        live, drafting = [True] * n, [True] * n  # drafting: this forward's output is the row's next draft
        last_pos = position[:, -1:]
        while True:
            tokens = out.logits[:, -1].argmax(-1).tolist()
            hidden = recorder.take()
            for r, i in enumerate(todo):
                if live[r] and drafting[r]:
                    feed[r] = [tokens[r]]
                    if whole:
                        accepted[i].append(tokens[r])
                        if streamer is not None:
                            _emit(streamer, i, feed[r])
                    else:
                        pending[r].append((tokens[r], hidden[r]))
                        stats.drafted += 1
            if any(live[r] and self._verify_due(pending[r], accepted[i], max_new_tokens, probe, i)
                   for r, i in enumerate(todo)):
                cut = self._verify(todo, pending, accepted, live, stats, streamer, feed)
                if cut:
                    if not self._crop(cache, cut):
                        return  # rows with a replaced draft restart in the next round
                    mask, last_pos = mask[:, :-cut], last_pos - cut
                    self._rewind(cut, todo, base, accepted, live, fed, feed)
                if stats.rejected > MAX_REJECTED_PER_ROW * n and not whole:
                    recorder.head, whole, stats.whole_head = self._full_head(), True, True
            for r, i in enumerate(todo):
                live[r] = live[r] and not self._finished(accepted, i, max_new_tokens, stop)
            if not any(live):
                return
            step = self._next_step(live, feed, fed, drafting)
            mask = torch.cat([mask, mask.new_ones((n, 1))], dim=1)
            last_pos = last_pos + 1
            kwargs = {"attention_mask": mask if padded else None, "position_ids": last_pos, "use_cache": True,
                      cache_key: cache}
            out = lm(input_ids=torch.tensor(step, device=mask.device)[:, None], logits_to_keep=1, **kwargs)

    def _verify_due(self, pending: list, accepted: list[int], max_new_tokens: int, probe=None, row: int = 0) -> bool:
        """A row's pending drafts are verified now: they reach max_new_tokens, end with an end token, number
        VERIFY_EVERY, or `probe` (a RowStop's would_stop) says they end the row."""
        return bool(pending) and (len(accepted) + len(pending) >= max_new_tokens or pending[-1][0] in self.end_ids
                                  or len(pending) >= VERIFY_EVERY
                                  or (probe is not None and probe(row, accepted + [t for t, _ in pending])))

    @staticmethod
    def _rewind(cut: int, todo, base: list[int], accepted, live: list[bool], fed: list[list[int]],
                feed: list[list[int]]) -> None:
        """After the last `cut` positions left the KV cache: each row's fed tokens lose them, and a live row feeds
        again the verified tokens the cut removed from the cache, then the next one."""
        for r, i in enumerate(todo):
            fed[r] = fed[r][:len(fed[r]) - cut]
            if live[r]:
                feed[r] = accepted[i][base[r] + len(fed[r]):]

    def _next_step(self, live: list[bool], feed: list[list[int]], fed: list[list[int]],
                   drafting: list[bool]) -> list[int]:
        """The token each row feeds in the next forward (padding for finished rows), taken from its `feed`; a row
        whose `feed` is then empty drafts from that forward's output."""
        step = []
        for r in range(len(live)):
            step.append(feed[r].pop(0) if live[r] else self.pad_id)
            drafting[r] = live[r] and not feed[r]
            fed[r].append(step[-1])
        return step

    def _verify(self, todo, pending, accepted, live, stats: DraftStats, streamer, feed) -> int:
        """Check every live row's pending drafts with the whole head in one product; accept each row's drafts
        up to its first miss, which is replaced by the whole head's token. Returns how many cached positions
        must be cut so that no row keeps a rejected token (0: none)."""
        rows = [r for r in range(len(todo)) if live[r] and pending[r]]
        if not rows:
            return 0
        hidden = torch.stack([h for r in rows for _, h in pending[r]])
        best = head_logits(self.base_model, hidden).float().argmax(-1).tolist()
        k, cut = 0, 0
        for r in rows:
            drafts = [t for t, _ in pending[r]]
            truth = best[k:k + len(drafts)]
            k += len(drafts)
            n_ok = next((j for j, (d, t) in enumerate(zip(drafts, truth, strict=True)) if d != t), len(drafts))
            new = drafts[:n_ok]
            if n_ok < len(drafts):
                new.append(truth[n_ok])
                stats.rejected += 1
                # cached after this row's verified tokens: the rejected draft and the drafts fed after it
                cut = max(cut, len(drafts) - 1 - n_ok)
                feed[r] = [truth[n_ok]]
            accepted[todo[r]].extend(new)
            pending[r] = []
            if streamer is not None and new:
                _emit(streamer, todo[r], new)
        return cut

    @staticmethod
    def _crop(cache, cut: int) -> bool:
        """Drop the last `cut` positions of a KV cache; False (cache untouched) where that is not possible: a
        sliding-window layer already past its window keeps no older states, or a cache without crop()."""
        layers = getattr(cache, "layers", None)
        if layers is None or not hasattr(cache, "crop"):
            return False
        for layer in layers:
            window = getattr(layer, "sliding_window", None)
            if getattr(layer, "is_sliding", False) and window is not None and layer.get_seq_length() >= window:
                return False
        cache.crop(-cut)
        return True

    def _full_head(self) -> nn.Module:
        owner, name = output_embeddings_owner(self.base_model)
        return getattr(owner, name)


class _Recorder(nn.Module):
    """A per-call output head: applies `head` and keeps the hidden states it saw (the last position), so the
    whole head can check the drafts later without running the body again."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head
        self._hidden: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        self._hidden = hidden[:, -1].detach()
        return self.head(hidden)

    def take(self) -> torch.Tensor:
        hidden, self._hidden = self._hidden, None
        return hidden


def _emit(streamer, row: int, tokens: list[int]) -> None:
    """A row's newly verified tokens to the streamer: `put_row` where it follows rows, else `put` (one prompt)."""
    if hasattr(streamer, "put_row"):
        streamer.put_row(row, tokens)
    else:
        streamer.put(torch.tensor(tokens, dtype=torch.long))


def _stopping_criteria(stop: RowStop, prompt_len: int, end_ids: set[int]):
    """A RowStop for generate(): rows it ends get the pad token from then on (generate's unfinished rows)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopRows(StoppingCriteria):
        def __init__(self):
            super().__init__()
            self.done: set[int] = set()

        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
            for row, ids in enumerate(input_ids[:, prompt_len:].tolist()):
                if row in self.done:
                    continue
                cut = next((k for k, t in enumerate(ids) if t in end_ids), len(ids))
                if stop(row, ids[:cut]):
                    self.done.add(row)
            return torch.tensor([row in self.done for row in range(input_ids.shape[0])], device=input_ids.device)

    return StoppingCriteriaList([StopRows()])
