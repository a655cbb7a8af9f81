"""Exports for the ecosystem: TRL prompt-completion JSONL per step, LLaMA-Factory alpaca JSON + dataset_info."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ktune.data.dataset import DatasetRecord
from ktune.paths import atomic_write_text
from ktune.prompt import PromptFormat

STEPS = ("query", "answer", "instruction")
MESSAGE_SPLITS = ("train", "dev")  # conversational copies for chat-template training


def step_example(step: str, record: DatasetRecord, fmt: PromptFormat) -> tuple[str, str]:
    """(prompt, completion) of one training step for a record."""
    q = record.question
    if step == "query":
        return fmt.query_prompt(q), fmt.query_target(record.entity, record.attribute)
    if step == "answer":
        return fmt.answer_prompt(q, record.knowledge), fmt.answer_target(record.answer)
    return fmt.instruction_prompt(q), fmt.answer_target(record.answer)


def write_exports(
    out: Path, splits: dict[str, list[DatasetRecord]], fmt: PromptFormat | None = None
) -> dict[str, str]:
    """DIR/exports/trl/{step}_{split}.jsonl (prompt-completion), trl/messages/{step}_{train,dev}.jsonl
    (conversational) and DIR/exports/llamafactory/*.json + dataset_info.json; returns {path: sha256}."""
    fmt = fmt or PromptFormat()
    files: dict[str, str] = {}
    info = {}
    for split, records in splits.items():
        for step in STEPS:
            pairs = [step_example(step, r, fmt) for r in records]
            trl = "".join(
                json.dumps({"prompt": p, "completion": c}, ensure_ascii=False) + "\n" for p, c in pairs
            )
            files[f"exports/trl/{step}_{split}.jsonl"] = _write(
                out / "exports" / "trl" / f"{step}_{split}.jsonl", trl
            )
            if split in MESSAGE_SPLITS:
                rel = f"exports/trl/messages/{step}_{split}.jsonl"
                files[rel] = _write(out / rel, "".join(_messages(p, c) for p, c in pairs))
            alpaca = [{"instruction": p, "input": "", "output": c} for p, c in pairs]
            name = f"ktune_{step}_{split}"
            rel = f"exports/llamafactory/{name}.json"
            files[rel] = _write(out / rel, json.dumps(alpaca, ensure_ascii=False, indent=1) + "\n")
            info[name] = {
                "file_name": f"{name}.json",
                "columns": {"prompt": "instruction", "query": "input", "response": "output"},
            }
    rel = "exports/llamafactory/dataset_info.json"
    files[rel] = _write(out / rel, json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    fmt.save_pretrained(out / "exports")
    return files


def _messages(prompt: str, completion: str) -> str:
    turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion.rstrip("\n")}]
    return json.dumps({"messages": turns}, ensure_ascii=False) + "\n"


def _write(path: Path, text: str) -> str:
    atomic_write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
