"""`predict`: a JSONL file of questions -> a JSONL file of queries, knowledge and answers, resumable.

The whole input is validated before anything is written (bad UTF-8, bad JSON, a missing, non-string,
empty or over-long `question`: InputError naming the line). Output lines are appended one batch per
write + fsync; on a rerun the lines already written are kept (a torn last line is cut off) and only the
remaining inputs are answered.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ktune.errors import InputError
from ktune.pipeline.qa import Answer, validate_question

log = logging.getLogger(__name__)

OUTPUT_FIELDS = ("query", "linked_entity", "link_score", "link_method", "knowledge", "answer", "refused",
                 "refusal_reason", "kb_version", "generation")
INPUT_PREFIX = "input_"  # an input field that an output field would overwrite is kept as input_<name>


@dataclass
class PredictReport:
    input: str
    output: str
    total: int
    skipped_existing: int
    written: int
    refused: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def read_questions(path: str | Path, max_chars: int) -> list[dict]:
    """Every record of a JSONL input, validated; blank lines are skipped (but counted for line numbers)."""
    records = []
    try:
        raw_lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"cannot read predict input {path}: {exc}") from exc
    for n, raw in enumerate(raw_lines, 1):
        where = f"{path}:{n}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start}); re-save the file as UTF-8") from exc
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
        if not isinstance(rec, dict) or "question" not in rec:
            raise InputError(f'{where}: each line needs a "question" field, e.g. {{"question": "感冒会传染吗？"}}')
        validate_question(rec["question"], max_chars, where)
        records.append(rec)
    return records


def output_record(rec: dict, answer: Answer) -> dict:
    out = {}
    for key, value in rec.items():
        out[INPUT_PREFIX + key if key in OUTPUT_FIELDS else key] = value
    pred = answer.to_json()
    out.update({k: pred[k] for k in OUTPUT_FIELDS})
    return out


def existing_lines(path: Path, records: list[dict]) -> int:
    """How many complete output lines `path` already holds for `records`; cuts off a torn last line."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep, count = 0, 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            done = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            break
        if count >= len(records) or done.get("question") != records[count]["question"]:
            raise InputError(
                f"{path}: line {count + 1} does not belong to this input (question {done.get('question')!r:.40}); "
                "it is the output of another input: pass a new --output or delete it"
            )
        keep += len(line)
        count += 1
    if keep < len(data):
        log.warning("%s: cutting off a torn last line (%d bytes) before resuming", path, len(data) - keep)
        with open(path, "r+b") as f:
            f.truncate(keep)
    return count


def _append(path: Path, lines: list[str]) -> None:
    payload = "".join(lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict_file(qa, input_path: str | Path, output_path: str | Path, *, with_answer: bool = True,
                 batch_size: int | None = None, progress: bool = True) -> PredictReport:
    """Answer every question of `input_path` into `output_path` (resuming a partly written output)."""
    from tqdm import tqdm

    records = read_questions(input_path, qa.config.max_question_chars)
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = existing_lines(out, records)
    if done:
        log.info("%s: %d of %d lines already written; resuming", out, done, len(records))
    todo = records[done:]
    size = batch_size or qa.config.batch_size
    written = refused = 0
    with tqdm(total=len(records), initial=done, disable=not progress, unit="q", desc="predict") as bar:
        for batch in _batches(todo, size):
            answers = qa.ask_batch([r["question"] for r in batch], with_answer=with_answer)
            lines = [json.dumps(output_record(r, a), ensure_ascii=False) + "\n" for r, a in zip(batch, answers, strict=True)]
            _append(out, lines)
            written += len(lines)
            refused += sum(a.refused for a in answers)
            bar.update(len(batch))
    if not out.exists():
        out.touch()
    return PredictReport(str(input_path), str(out), len(records), done, written, refused)
