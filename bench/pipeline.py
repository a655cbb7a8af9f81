"""Pipeline benchmark: stage-1 and full-answer latency, batched query throughput, constrained overhead, and
stage-1 accuracy of every query mode on the human-style questions (tests/fixtures/human_questions.jsonl).

    python bench/pipeline.py --run runs/demo [--kb PATH] [--latency-n 20] [--throughput-n 64] [--variants]

Prints numbers (and --json writes them); measures, asserts nothing. Timings depend on the machine's load:
on a shared machine run it when it is idle, and compare modes within one run only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUMAN = ROOT / "tests" / "fixtures" / "human_questions.jsonl"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def read_questions(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def set_mode(qa, mode: str, batch_size: int | None = None) -> None:
    qa.config = replace(qa.config, query_mode=mode, batch_size=batch_size or qa.config.batch_size)
    qa.query_stage.config = qa.answer_stage.config = qa.config


def latency(qa, questions: list[str], with_answer: bool) -> dict:
    """Per-question wall time of ask() one at a time (batch of one)."""
    times = []
    for q in questions:
        t = time.perf_counter()
        qa.ask(q, with_answer=with_answer)
        times.append(time.perf_counter() - t)
    return {"n": len(times), "p50_s": percentile(times, 0.5), "p95_s": percentile(times, 0.95)}


def throughput(qa, questions: list[str], mode: str, batch_size: int) -> dict:
    """Questions per second of batched stage 1 + 2 (what `predict --no-answer` does)."""
    set_mode(qa, mode, batch_size)
    t = time.perf_counter()
    qa.ask_batch(questions, with_answer=False)
    seconds = time.perf_counter() - t
    return {"mode": mode, "n": len(questions), "seconds": seconds, "q_per_s": len(questions) / seconds}


def score(records: list[dict], answers) -> dict:
    """Entity / attribute / retrieval accuracy on in-KB questions; refusal rate on the not-in-KB ones."""
    in_kb = [(r, a) for r, a in zip(records, answers, strict=True) if r["entity"] is not None]
    no_kb = [(r, a) for r, a in zip(records, answers, strict=True) if r["entity"] is None]
    ent = sum(a.linked_entity in {r["entity"], *r.get("alternatives", [])} for r, a in in_kb)
    att = sum(a.query[1] == r["attribute"] for r, a in in_kb)
    ret = sum(a.linked_entity in {r["entity"], *r.get("alternatives", [])} and a.query[1] == r["attribute"]
              and bool(a.knowledge) for r, a in in_kb)
    n = max(len(in_kb), 1)
    return {"n_in_kb": len(in_kb), "entity_acc": ent / n, "attribute_acc": att / n, "retrieval_acc": ret / n,
            "n_no_kb": len(no_kb), "no_kb_refused": sum(a.refused for _, a in no_kb) / max(len(no_kb), 1)}


def variants(qa, records: list[dict], modes: list[str], batch_size: int) -> dict:
    out = {}
    for mode in modes:
        set_mode(qa, mode, batch_size)
        t = time.perf_counter()
        answers = qa.ask_batch([r["question"] for r in records], with_answer=False)
        out[mode] = {**score(records, answers), "seconds": time.perf_counter() - t}
        out[mode]["rows"] = [{"id": r.get("id"), "gold": [r["entity"], r["attribute"]], "query": list(a.query),
                              "linked": a.linked_entity, "method": a.link_method, "refused": a.refused}
                             for r, a in zip(records, answers, strict=True)]
        print(f"  {mode:9s} " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in out[mode].items() if k != "rows"), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--kb", help="KB path (default location when omitted)")
    p.add_argument("--questions", type=Path, default=HUMAN)
    p.add_argument("--mode", default="fallback", help="query mode for the latency figures")
    p.add_argument("--latency-n", type=int, default=20)
    p.add_argument("--answer-n", type=int, default=8)
    p.add_argument("--throughput-n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--variants", action="store_true", help="stage-1 accuracy of every query mode")
    p.add_argument("--no-speed", action="store_true", help="skip the latency / throughput figures")
    p.add_argument("--modes", default="free,greedy,beam,rerank,fallback")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--num-beams", type=int, default=4)
    p.add_argument("--query-vocab", default="kb", choices=("kb", "full"))
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = p.parse_args(argv)

    import torch

    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.perf_counter()
    qa = KnowledgeTunedQA.from_pretrained(args.run, kb=args.kb, config=PipelineConfig(
        query_mode=args.mode, dtype=args.dtype, num_beams=args.num_beams, query_vocab=args.query_vocab))
    _ = qa.query_stage.grammar  # build the trie outside the timings
    qa.kb.link("预热")  # and the linker's indexes
    results = {"load_s": time.perf_counter() - t, "threads": torch.get_num_threads(),
               "dtype": str(next(qa.decoder.model.parameters()).dtype), "mode": args.mode,
               "grammar_surfaces": qa.query_stage.grammar.entity_trie.size}
    print(f"loaded in {results['load_s']:.1f}s; dtype {results['dtype']}, {results['threads']} threads, "
          f"{results['grammar_surfaces']} surfaces in the trie")
    records = read_questions(args.questions)
    if not args.no_speed:
        results.update(speed(qa, args, records))
    if args.variants:
        print(f"stage-1 accuracy on {args.questions.name} ({len(records)} questions):")
        results["variants"] = variants(qa, records, args.modes.split(","), args.batch_size)
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def speed(qa, args, records: list[dict]) -> dict:
    results = {}
    questions = [r["question"] for r in records]
    qa.ask(questions[0])  # warm-up
    results["stage1_latency"] = latency(qa, questions[: args.latency_n], with_answer=False)
    results["answer_latency"] = latency(qa, [r["question"] for r in records if r["entity"]][: args.answer_n], True)
    sample = (questions * (args.throughput_n // len(questions) + 1))[: args.throughput_n]
    free = throughput(qa, sample, "free", args.batch_size)
    greedy = throughput(qa, sample, "greedy", args.batch_size)
    default = throughput(qa, sample, args.mode, args.batch_size)
    results["throughput"] = {"free": free, "greedy": greedy, args.mode: default}
    results["constrained_overhead"] = {
        "greedy_vs_free": greedy["seconds"] / free["seconds"] - 1,
        f"{args.mode}_vs_free": default["seconds"] / free["seconds"] - 1,
    }
    s1, fa = results["stage1_latency"], results["answer_latency"]
    print(f"stage-1 latency ({args.mode}, one question): p50 {s1['p50_s']:.3f}s  p95 {s1['p95_s']:.3f}s")
    print(f"full answer latency: p50 {fa['p50_s']:.3f}s  p95 {fa['p95_s']:.3f}s")
    for name, r in results["throughput"].items():
        print(f"predict --no-answer throughput [{name}] batch {args.batch_size}: {r['q_per_s']:.2f} q/s")
    for name, v in results["constrained_overhead"].items():
        print(f"constrained overhead {name}: {100 * v:+.1f}%")
    set_mode(qa, args.mode, args.batch_size)
    return results


if __name__ == "__main__":
    sys.exit(main())
