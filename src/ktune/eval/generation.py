"""Greedy generation from token ids for the eval-only systems (oracle-entity prefix, instruction baseline)."""

from __future__ import annotations

from ktune.prompt import PromptFormat, encode_pieces


def generate_from_ids(model, tokenizer, fmt: PromptFormat, id_lists: list[list[int]], *, max_new_tokens: int,
                      batch_size: int = 16) -> list[str]:
    """Greedy continuations of already-encoded prompts (left-padded), cut at the format's stop string."""
    import torch

    from ktune.train.generation import stop_token_ids

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_token_ids(tokenizer, fmt)
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(id_lists), batch_size):
        batch = id_lists[start:start + batch_size]
        width = max(len(e) for e in batch)
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in batch], device=device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in batch], device=device)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stops, pad_token_id=pad, use_cache=True)
        for row in gen[:, width:].tolist():
            out.append(tokenizer.decode(row, skip_special_tokens=True).split(fmt.stop, 1)[0])
    return out


def oracle_prompt_ids(tokenizer, fmt: PromptFormat, question: str, entity: str) -> list[int]:
    """The query prompt followed by the gold entity and the separator, tokenised in training's pieces."""
    return fmt.encode_prompt(tokenizer, fmt.query_prompt(question)) + encode_pieces(tokenizer, [entity, fmt.separator])


def instruction_prompt_ids(tokenizer, fmt: PromptFormat, question: str) -> list[int]:
    return fmt.encode_prompt(tokenizer, fmt.instruction_prompt(question))
