"""`ktune demo`: the whole method on the embedded defaults (CMeKG in SQLite, Gemma-3-270M on CPU).

Steps, each skipped when its output is already there and current (so a second `make demo` is quick):
  1. import CMeKG into the default KB        4. knowledge-tune Gemma-3-270M (<= 15 min on 2 cores)
  2. build the knowledge-tuning dataset      5. evaluate vs BM25 / dense / rules, print the table
  3. prepare Gemma-3-270M (GGUF -> HF)       6. example answers with provenance: a refusal, a false premise
"""

from __future__ import annotations

import logging
from pathlib import Path

from ktune.paths import DEFAULT_KB_HELP

log = logging.getLogger("ktune.demo")

DEMO_SYSTEMS = ("bm25-word", "bm25-char", "dense", "rules", "model")
EXAMPLE_QUESTIONS = [
    "急性中耳炎的药物治疗有哪些？",
    "吃盐酸二甲双胍片要注意什么？",
    "乳腺结节吃什么药？",  # 乳腺结节 is not a CMeKG entry (乳腺结核 is another disease): the answer must be a refusal
    "利福平可以治疗肝胆管结石吗？",  # a false premise: answered from 利福平片's indications, which do not list it
]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole method on the embedded defaults (what `make demo` runs)",
        description=__doc__,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("--kb", metavar="PATH", help=f"KB file (default: {DEFAULT_KB_HELP})")
    p.add_argument("--data", default="data/demo", help="dataset folder (default: data/demo)")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--eval-limit", type=int, default=300,
                   help="test items per split for the demo's evaluation (default 300; `ktune eval` runs all)")
    p.add_argument("--retrain", action="store_true", help="train again even if the run is complete")
    p.set_defaults(func=run)


def run(args) -> int:
    from ktune.kb import KnowledgeBase

    with KnowledgeBase.open(args.kb, create=True) as kb:
        _ensure_kb(kb)
        data_dir = _ensure_dataset(kb, Path(args.data))
        run_dir = _ensure_run(data_dir, Path(args.out), args.retrain)
        _evaluate(kb, data_dir, run_dir, args.eval_limit)
        _examples(kb, run_dir)
    return 0


def _ensure_kb(kb) -> None:
    if kb.store.counts()["entities"] == 0:
        log.info("step 1/6: importing CMeKG into %s", kb.store.path)
        report = kb.import_cmekg(progress=True)
        log.info("imported %d entities in %.1fs, KB version %s", report.entities_after, report.seconds, report.version_after)
    else:
        log.info("step 1/6: KB %s ready (version %s)", kb.store.path, kb.version)


def _ensure_dataset(kb, data_dir: Path) -> Path:
    from ktune.data import DataConfig, build_dataset
    from ktune.data.build import GENERATOR_VERSION, input_digests
    from ktune.data.dataset import Dataset
    from ktune.data.questions import QuestionBank

    config = DataConfig()
    current = {
        "kb_version": kb.version,
        "question_bank_version": QuestionBank.load().version,
        "inputs": input_digests(),  # an edited template or lay name list is another dataset
        "generator_version": GENERATOR_VERSION,  # so is a generator that writes other records
        "config": {k: v for k, v in config.to_json().items() if k != "progress"},
    }
    built = Dataset.load(data_dir).manifest if data_dir.is_dir() else {}
    if built:
        if all(built.get(k) == v for k, v in current.items()):
            log.info("step 2/6: dataset %s ready", data_dir)
            return data_dir
        log.info("step 2/6: dataset %s was built from another KB, question bank, lay-name list, generator or configuration",
                 data_dir)
    log.info("step 2/6: building the knowledge-tuning dataset into %s", data_dir)
    report = build_dataset(kb, data_dir, config)
    log.info("dataset counts: %s", report.get("counts", report))
    return data_dir


def _ensure_run(data_dir: Path, run_dir: Path, retrain: bool) -> Path:
    from ktune.data.dataset import Dataset
    from ktune.models import resolve_base
    from ktune.train import RunInfo, demo_config, train
    from ktune.train.checkpoint import checkpoint_data_version

    log.info("step 3/6: preparing Gemma-3-270M")
    resolve_base("gemma3-270m")
    data_version = Dataset.load(data_dir).version
    if not retrain and (run_dir / "ktune.json").is_file():
        info = RunInfo.load(run_dir)
        if info.data_version == data_version and (run_dir / "adapter").is_dir():
            log.info("step 4/6: run %s already trained on this dataset; --retrain to train again", run_dir)
            return run_dir
    cfg = demo_config(data_dir, run_dir)
    # an interrupted run of this dataset resumes; a run of another dataset (an edited question bank) starts over
    trained_on = checkpoint_data_version(run_dir)
    cfg.resume = not retrain and (trained_on == data_version
                                  or (trained_on == "" and not (run_dir / "ktune.json").is_file()))
    log.info("step 4/6: knowledge-tuning Gemma-3-270M on CPU into %s (resume=%s)", run_dir, cfg.resume)
    info = train(cfg)
    log.info("trained: %s", {k: v for k, v in info.metrics.items() if not isinstance(v, (list, dict))})
    return run_dir


def _evaluate(kb, data_dir: Path, run_dir: Path, limit: int) -> None:
    from ktune.eval import format_results_table, run_retrieval_suite

    log.info("step 5/6: evaluating on up to %d items per split (knowledge-tuned vs baselines)", limit)
    # The demo compares the knowledge-tuned model with the baselines; `ktune eval` adds the unconstrained
    # and oracle-entity ablations and the full test sets.
    metrics = run_retrieval_suite(kb, data_dir, run_dir=run_dir, limit=limit, out=run_dir / "eval", systems=DEMO_SYSTEMS)
    print("\n" + format_results_table(metrics))
    print(f"\nfull report: {run_dir / 'eval' / 'report.md'}")


def _examples(kb, run_dir: Path) -> None:
    from ktune.pipeline import KnowledgeTunedQA

    log.info("step 6/6: example answers")
    qa = KnowledgeTunedQA.from_pretrained(run_dir, kb=kb)
    for answer in qa.ask_batch(EXAMPLE_QUESTIONS):
        entity, attribute = answer.query
        print(f"\n问：{answer.question}")
        print(f"  query: {entity} / {attribute}  ->  linked: {answer.linked_entity}")
        print(f"  {'refused: ' + str(answer.refusal_reason) if answer.refused else 'answer:'}")
        print("  " + answer.answer.replace("\n", "\n  "))
    print(f"\nask your own: ktune ask --run {run_dir} \"急性中耳炎的药物治疗有哪些？\"")
