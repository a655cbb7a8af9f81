"""The answers task: knowledge recall, value fidelity, unsupported claims, predicate-as-value, dropped claims and
refusal correctness, knowledge-tuned vs L_it."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from ktune.eval.items import TestItem, load_test_items
from ktune.eval.metrics import (
    answer_grounding,
    bootstrap_mean,
    knowledge_recall,
    knowledge_recall_listed,
    proportion,
    proportion_of,
)
from ktune.eval.retrieval import score_splits
from ktune.eval.systems import Prediction
from ktune.pipeline.answer import LIST_CAP
from ktune.prompt import strip_provenance

log = logging.getLogger(__name__)
# Phrases that mark an answer as a refusal when a system does not say so itself (the instruction baseline).
REFUSAL_RE = re.compile(r"无法(根据|基于|回答|提供|确定)|没有(相关|找到|收录|关于)|找不到|不能回答|知识库中没有|未识别|未收录")


class InstructionSystem:
    """The instruction-tuned baseline (L_it): question -> answer from model memory, no KB call."""

    def __init__(self, run_dir, max_new_tokens: int = 160, batch_size: int = 8, device: str = "cpu"):
        self.run_dir, self.max_new_tokens, self.batch_size, self.device = run_dir, max_new_tokens, batch_size, device
        self.name = "instruction-tuned (no KB)"
        self._run = None

    def predict(self, questions: list[str]) -> list[Prediction]:
        from ktune.decoding import GreedyDecoder

        if self._run is None:
            from ktune.train.run import load_run

            self._run = load_run(self.run_dir, device=self.device)
        run = self._run
        texts = GreedyDecoder(run.model, run.tokenizer, run.prompt_format).texts(
            [run.prompt_format.instruction_prompt(q) for q in questions], self.max_new_tokens,
            batch_size=self.batch_size)
        return [Prediction(None, None, None, {}, bool(REFUSAL_RE.search(t)), answer=t) for t in texts]


def score_answer(item: TestItem, pred: Prediction, kb) -> dict:
    """One row: how much of the gold knowledge the answer states, whether its values are the KB's verbatim,
    what it claims beyond the knowledge it used (question terms are not support), what the check dropped.

    Values are judged against the knowledge the system used, or the gold entry when it used none (the
    instruction baseline); the same reading is applied to the pipeline's raw model body when the prediction
    carries it (`raw`: the answer as it would be without the claim check)."""
    answer = pred.answer or ""
    body = strip_provenance(answer)
    refused = bool(pred.refused or (not pred.knowledge and REFUSAL_RE.search(body)))
    reference = pred.knowledge or item.knowledge
    row = {
        "id": item.id,
        "split": item.split,
        "question": item.question,
        "gold_entity": item.entity,
        "gold_attribute": item.attribute,
        "should_refuse": item.should_refuse,
        "answer": answer,
        "knowledge": pred.knowledge,
        "refused": refused,
        "refusal_correct": refused == item.should_refuse,
        "knowledge_recall": None if item.should_refuse or refused else knowledge_recall(body, item.knowledge),
        "knowledge_recall_listed": None if item.should_refuse or refused
        else knowledge_recall_listed(body, item.knowledge, LIST_CAP),
        "knowledge_recall_retrieved": None if refused else knowledge_recall(body, pred.knowledge),
        "dropped_claims": pred.extra.get("dropped_claims") or [],
        "premise": pred.extra.get("premise"),
    }
    row.update(_grounding(body, pred.knowledge, reference, item, kb, refused))
    raw = pred.extra.get("raw_answer")
    if raw is not None and not refused:
        raw_body = strip_provenance(raw)
        row["raw"] = {"answer": raw,
                      "knowledge_recall": None if item.should_refuse else knowledge_recall(raw_body, item.knowledge),
                      **_grounding(raw_body, pred.knowledge, reference, item, kb, False)}
    return row


def _grounding(body: str, used: dict, reference: dict, item: TestItem, kb, refused: bool) -> dict:
    if refused:
        return {"unsupported_claims": [], "stated_values": 0, "verbatim_values": 0, "predicates_as_values": [],
                "other_field_values": [], "failing_sentences": []}
    g = answer_grounding(body, reference, item.question, kb, item.entity)
    if used is not reference:  # unsupported = not in what the system used ({} for a system without a KB)
        g["unsupported_claims"] = answer_grounding(body, used, item.question, kb, item.entity)["unsupported_claims"]
    return g


def aggregate_answers(rows: list[dict]) -> dict:
    """Means with bootstrap CIs for recall, Wilson CIs for rates; the answered/refused counts behind them.
    `without_claim_check`: the same reading of the model's raw bodies, where the rows carry them."""
    answered = [r for r in rows if not r["refused"]]
    recall = [r["knowledge_recall"] for r in rows if not r["should_refuse"]]
    out = {
        "n": len(rows),
        "answered": len(answered),
        # a refusal on an answerable item states none of the knowledge: it counts as recall 0
        "knowledge_recall": bootstrap_mean([0.0 if v is None else v for v in recall]),
        # the same, with a long field complete once LIST_CAP of its values are stated (the answer gives the count)
        "knowledge_recall_listed": bootstrap_mean([r.get("knowledge_recall_listed") or 0.0
                                                   for r in rows if not r["should_refuse"]]),
        **_claim_rates(answered),
        "dropped_claim_rate": proportion_of(bool(r.get("dropped_claims")) for r in answered),
        "refusal_correctness": proportion_of(r["refusal_correct"] for r in rows),
        "refusal_recall": proportion_of(r["refused"] for r in rows if r["should_refuse"]),
    }
    raw = [{**r, **r["raw"]} for r in answered if r.get("raw")]
    if raw:
        raw_recall = [r["knowledge_recall"] for r in raw if not r["should_refuse"]]
        out["without_claim_check"] = {"n": len(raw), **_claim_rates(raw),
                                      "knowledge_recall": bootstrap_mean([v or 0.0 for v in raw_recall])}
    return out


def _claim_rates(answered: list[dict]) -> dict:
    return {
        "value_fidelity": proportion(sum(r.get("verbatim_values", 0) for r in answered),
                                     sum(r.get("stated_values", 0) for r in answered)),
        "unsupported_claim_rate": proportion_of(bool(r["unsupported_claims"]) for r in answered),
        "unsupported_claims_per_answer": bootstrap_mean([len(r["unsupported_claims"]) for r in answered]),
        "predicate_as_value_rate": proportion_of(bool(r.get("predicates_as_values")) for r in answered),
        "other_field_rate": proportion_of(bool(r.get("other_field_values")) for r in answered),
    }


def evaluate_answers(system, splits: dict[str, list[TestItem]], kb, out: Path | None, progress=False) -> dict:
    result, _ = score_splits(system, splits, lambda it, p: score_answer(it, p, kb), aggregate_answers, out,
                             "answers", progress)
    return result


def run_answers_suite(kb, cfg, systems=None, limit_per_split: int = 50) -> dict:
    """Knowledge-tuned (with answers) vs the instruction-tuned `cfg.baseline_run`, on the same items."""
    from ktune.eval.systems import PipelineSystem, PredictionsFile

    if systems is None:
        systems = []
        if cfg.run_dir:
            systems.append(PipelineSystem(cfg.run_dir, kb, with_answer=True, backend=cfg.backend, quantize=cfg.quantize))
        if cfg.baseline_run:
            systems.append(InstructionSystem(cfg.baseline_run))
        systems += [PredictionsFile(p) for p in cfg.predictions]
    limit = cfg.limit or limit_per_split
    splits = load_test_items(cfg.data_dir, kb, limit=limit, real=cfg.real)
    metrics = {"suite": "answers", "kb_version": kb.version, "splits": {s: len(v) for s, v in splits.items()},
               "systems": {}, "timings_s": {}}
    if not systems:
        metrics["skipped"] = "no --run, --baseline-run or --predictions given: nothing produces answers"
        log.warning("answers suite: %s", metrics["skipped"])
    for system in systems:
        t0 = time.perf_counter()
        metrics["systems"][system.name] = evaluate_answers(system, splits, kb, cfg.out_dir, cfg.progress)
        metrics["timings_s"][system.name] = round(time.perf_counter() - t0, 2)
    return metrics
