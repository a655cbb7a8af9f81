"""`build_dataset(kb, out_dir, config)`: the whole dataset folder, deterministic for a seed and a KB."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import replace
from pathlib import Path

from ktune.data.config import DataConfig
from ktune.data.dataset import SPLITS, Dataset, DatasetRecord
from ktune.data.generate import Generator
from ktune.data.report import make_report, render_card, render_markdown
from ktune.paths import atomic_write_text

log = logging.getLogger(__name__)


def build_dataset(kb, out_dir, config: DataConfig | None = None) -> dict:
    """Write DIR/{splits}.jsonl, fewshot/, exports/, manifest.json, report.{json,md}; return the report."""
    config = config or DataConfig()
    out = Path(out_dir)
    start = time.perf_counter()
    log.info("building dataset from KB %s (version %s), seed %d", kb.store.path, kb.version, config.seed)
    gen = Generator(kb, config)
    splits = make_splits(gen, config)
    teacher_stats = None
    if config.teacher_url:
        from ktune.data.teacher import Teacher, rewrite_splits

        teacher = Teacher(
            config.teacher_url, config.teacher_model, config.teacher_timeout, config.teacher_retries
        )
        teacher_stats = rewrite_splits(splits, teacher, gen, config)
    files = write_splits(out, splits, config)
    if config.exports:
        from ktune.data.exports import write_exports

        files.update(write_exports(out, splits))
    report = make_report(kb, gen, splits, config, teacher_stats)
    manifest = {
        "data_version": _content_hash(files),
        "kb_version": kb.version,
        "schema_version": kb.schema.version,
        "question_bank_version": gen.bank.version,
        "inputs": input_digests(),
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "counts": {s: len(splits[s]) for s in SPLITS},
        "config": {k: v for k, v in config.to_json().items() if k != "progress"},
        "files": {name: digest for name, digest in sorted(files.items())},
    }
    report["data_version"] = manifest["data_version"]
    Dataset.save_manifest(out, manifest)
    atomic_write_text(out / "report.json", json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    atomic_write_text(out / "report.md", render_markdown(report))
    atomic_write_text(out / "README.md", render_card(report, kb.meta.get("attribution", "")))
    seconds = round(time.perf_counter() - start, 2)
    log.info(
        "dataset %s written to %s in %.1fs: %s", manifest["data_version"], out, seconds, manifest["counts"]
    )
    return {**report, "out_dir": str(out), "seconds": seconds}


# Raised when the generator writes other records from the same KB, inputs and configuration (2: no lacking-field
# refusal where an entry the KB names as the same one answers), so `make demo` rebuilds a dataset built before.
GENERATOR_VERSION = 2


def input_digests() -> dict[str, str]:
    """A digest of each packaged file a build reads besides the KB (question templates, answer phrasings, absent
    terms, lay names): the same KB and configuration with another of these files is another dataset."""
    from ktune.data.answers import BANK_PATH as ANSWER_BANK
    from ktune.data.generate import ABSENT_PATH
    from ktune.data.questions import BANK_PATH as QUESTION_BANK
    from ktune.kb.linker import LAY_NAMES_PATH

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in (QUESTION_BANK, ANSWER_BANK, ABSENT_PATH, LAY_NAMES_PATH)}


def make_splits(gen: Generator, config: DataConfig) -> dict[str, list[DatasetRecord]]:
    """All records, split. Test splits use held-out templates only; unseen entities never reach train/dev."""
    from tqdm.auto import tqdm

    pools, seed = gen.pools, config.seed
    rng = lambda name: random.Random(f"{seed}:{name}")  # noqa: E731
    seen = pools.seen_pool()
    splits: dict[str, list[DatasetRecord]] = {}
    with tqdm(total=len(SPLITS), desc="dataset splits", unit="split", disable=not config.progress) as bar:
        splits["train"] = _answerable_mix(
            gen, "train", seen, config.train_size, config.max_per_pair, False, config
        )
        bar.update()
        splits["dev"] = _answerable_mix(gen, "dev", seen, config.dev_size, 1, None, config)
        bar.update()
        trained = sorted({x.entity for x in splits["train"] if x.kind == "in_kb"})
        splits["test_seen"] = gen.stratified(
            "test_seen", trained, config.test_seen_size, 1, True, rng("test_seen")
        )
        bar.update()
        unseen = sorted(e for e in pools.unseen if e in pools.attrs)
        splits["test_unseen"] = gen.stratified(
            "test_unseen", unseen, config.test_unseen_size, config.max_per_pair, True, rng("test_unseen")
        )
        bar.update()
        r, n = rng("test_no_knowledge"), config.test_no_knowledge_size
        nk = gen.absent_records("test_no_knowledge", gen.absent["test"], round(n * 0.6), True, r)
        nk += gen.lacking_records("test_no_knowledge", trained, n - len(nk), True, r)
        splits["test_no_knowledge"] = nk
        bar.update()
    for name in SPLITS:
        random.Random(f"{seed}:order:{name}").shuffle(splits[name])
        splits[name] = [replace(rec, id=f"{name}-{i:05d}") for i, rec in enumerate(splits[name])]
    return splits


def _answerable_mix(gen, split, entities, size, per_pair, heldout, config) -> list[DatasetRecord]:
    """In-KB records plus the configured shares of absent-entity and lacking-attribute refusals."""
    r = random.Random(f"{config.seed}:{split}")
    n_abs, n_lack = round(size * config.absent_share), round(size * config.lacking_share)
    records = gen.stratified(split, entities, size - n_abs - n_lack, per_pair, heldout, r)
    records += gen.absent_records(split, gen.absent["train"], n_abs, heldout, r)
    records += gen.lacking_records(split, entities, n_lack, heldout, r)
    return records


def write_splits(out: Path, splits: dict[str, list[DatasetRecord]], config: DataConfig) -> dict[str, str]:
    """Split files and nested few-shot prefixes; returns {relative path: sha256}."""
    files = {}
    for name in SPLITS:
        files[f"{name}.jsonl"] = Dataset.save_split(out / f"{name}.jsonl", splits[name])
    order = list(splits["train"])
    random.Random(f"{config.seed}:fewshot").shuffle(order)
    for n in config.fewshot_sizes:
        if n <= len(order):
            files[f"fewshot/train_{n}.jsonl"] = Dataset.save_split(out / "fewshot" / f"train_{n}.jsonl", order[:n])
    return files


def _content_hash(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name, digest in sorted(files.items()):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()[:16]
