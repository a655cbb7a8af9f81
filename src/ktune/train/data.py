"""Training examples from a dataset folder: query-step and answer-step token ids with loss only on target tokens."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from ktune.data.dataset import DatasetRecord
from ktune.errors import ConfigError
from ktune.prompt import PromptFormat, encode_pieces

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE on BOS + prompt, token ids on the target (+ EOS)
    step: str  # query | answer | instruction
    record_id: str


def encode(tokenizer, fmt: PromptFormat, prompt: str, pieces: list[str], step: str, record_id: str) -> Example:
    """BOS + prompt (labels IGNORE) + target pieces tokenised one by one + EOS (labels = ids)."""
    prompt_ids = fmt.encode_prompt(tokenizer, prompt)
    target = encode_pieces(tokenizer, pieces)
    if tokenizer.eos_token_id is not None:
        target = target + [tokenizer.eos_token_id]
    return Example(prompt_ids + target, [IGNORE] * len(prompt_ids) + list(target), step, record_id)


def record_examples(rec: DatasetRecord, tokenizer, fmt: PromptFormat, method: str, with_answer: bool,
                    refusals: bool) -> list[Example]:
    q, rid = rec.question, rec.id
    if method == "instruction":
        return [encode(tokenizer, fmt, fmt.instruction_prompt(q), fmt.answer_target_pieces(rec.answer), "instruction", rid)]
    out = [encode(tokenizer, fmt, fmt.query_prompt(q), fmt.query_target_pieces(rec.entity, rec.attribute), "query", rid)]
    has_knowledge = rec.kind == "in_kb" and bool(rec.knowledge)
    if with_answer and (has_knowledge or refusals):
        prompt = fmt.answer_prompt(q, rec.knowledge)
        out.append(encode(tokenizer, fmt, prompt, fmt.answer_target_pieces(rec.answer), "answer", rid))
    return out


def build_examples(records: list[DatasetRecord], tokenizer, fmt: PromptFormat, *, method: str = "knowledge",
                   max_length: int = 256, answer_fraction: float = 1.0, answer_refusals: bool = False,
                   seed: int = 0) -> tuple[list[Example], dict]:
    """All training examples of the records, and counts (per step kind, skipped as too long)."""
    rng = random.Random(seed)
    examples, skipped = [], 0
    for rec in records:
        with_answer = answer_fraction >= 1.0 or rng.random() < answer_fraction
        for ex in record_examples(rec, tokenizer, fmt, method, with_answer, answer_refusals):
            if len(ex.input_ids) > max_length:
                skipped += 1
                continue
            examples.append(ex)
    if not examples:
        raise ConfigError(f"no training example fits max_length={max_length}; raise --max-length")
    counts = {"records": len(records), "examples": len(examples), "skipped_too_long": skipped}
    for ex in examples:
        counts[ex.step] = counts.get(ex.step, 0) + 1
    if skipped:
        log.warning("%d examples longer than max_length=%d skipped", skipped, max_length)
    return examples, counts


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, mode: str = "group") -> list[list[int]]:
    """Batches of example indices for one epoch, a pure function of (seed, epoch): resume needs only the step.

    group (and pack): shuffle, sort by length within windows of 50 batches, cut into batches, shuffle the batches.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if mode in ("group", "pack"):
        window = batch_size * 50
        order = [i for s in range(0, len(order), window) for i in sorted(order[s:s + window], key=lambda j: lengths[j])]
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    if mode in ("group", "pack"):
        rng.shuffle(batches)
    return batches


def pack_rows(examples: list[Example]) -> list[list[Example]]:
    """First-fit decreasing into rows no wider than the longest example (fewer, fuller rows)."""
    width = max(len(ex.input_ids) for ex in examples)
    rows: list[list[Example]] = []
    room: list[int] = []
    for ex in sorted(examples, key=lambda e: -len(e.input_ids)):
        n = len(ex.input_ids)
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(ex)
                room[r] -= n
                break
        else:
            rows.append([ex])
            room.append(width - n)
    return rows


def collate(examples: list[Example], pad_id: int, weights: dict[str, float], pack: bool = False) -> dict:
    """Right-padded tensors: input_ids, labels, per-token loss weights, query_mask (tokens of query-step examples,
    scored over the query vocabulary when training uses it), n_tokens, and either attention_mask
    (one example per row) or position_ids restarting at 0 for each example (packed rows, no attention_mask:
    transformers then masks attention block-diagonally so packed examples never see each other)."""
    import torch

    rows = pack_rows(examples) if pack else [[ex] for ex in examples]
    width = max(sum(len(ex.input_ids) for ex in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    w = torch.zeros((len(rows), width), dtype=torch.float32)
    query = torch.zeros((len(rows), width), dtype=torch.bool)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for ex in row:
            n = len(ex.input_ids)
            ids[r, at:at + n] = torch.tensor(ex.input_ids)
            labels[r, at:at + n] = torch.tensor(ex.labels)
            mask[r, at:at + n] = 1
            w[r, at:at + n] = weights.get(ex.step, 1.0)
            query[r, at:at + n] = ex.step == "query"
            pos[r, at:at + n] = torch.arange(n)
            at += n
        pos[r, at:] = torch.arange(width - at)  # padding: a sequence of its own, no loss
    batch = {"input_ids": ids, "labels": labels, "weights": w, "query_mask": query, "n_tokens": int(mask.sum())}
    if pack:
        batch["position_ids"] = pos
    else:
        batch["attention_mask"] = mask
    return batch
