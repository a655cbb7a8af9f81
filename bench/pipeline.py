"""Pipeline benchmark: the old decoding path against the new one, in one process on the same questions.

    python bench/pipeline.py --run runs/demo --data data/demo [--split test_seen] [--n 24] [--answer-n 16]
                             [--threads 2] [--json out.json] [--variants]

old: stage-3 answers by generate() with the whole 262k-row head at every step (answer_decoding "full"), stage 1
     one token per forward (query_lookup 0).
new: the defaults (answer_decoding "draft": draft-and-verify; query_lookup 8: prompt-lookup drafts for a single
     question's free query decode; both give the same greedy tokens).
Both share one loaded model, grammar and KB. For each path: stage-1 questions/s at batch 1 and batch 16 (stages
1-2, what `predict --no-answer` does), full-answer latency p50 / p95 for single questions (ask(): stages 1-3),
answer tokens/s, peak RSS during the path's calls, retrieval accuracy against the split's gold queries, and how
many queries and answer texts the two paths share. Single-question calls alternate old / new, so a change in the
machine's load hits both. Other processes' CPU use over the run is printed with the numbers.
--paths stop: the paths are "no stop" (stop_at_failed_sentence off: every sentence generated and checked) and
"stop" (the default: the first dropped sentence ends the model's text and its generation).
--paths dead: "complete sentences" (session 8's stop: a sentence stops the body once complete and dropped) and
"dead sentences" (the default: also as soon as no trained frame can begin it, Checker.dead).
--quantize int8: the paths are "fp32" (the defaults) and "int8" (the defaults on a second copy of the run whose
decoder body is dynamic int8, ktune.pipeline.quantize) instead of old and new.
--variants: stage-1 accuracy of every query mode on the human-style questions (tests/fixtures).
--base-url URL --model NAME: a third path, "remote": the defaults with the openai backend (ktune.pipeline.backend)
against a server serving the same run (e.g. llama.cpp with `ktune export --gguf`), its grammar field
--grammar-field; the servers' own threads are not counted in --threads.

Prints numbers (and --json writes them); measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUMAN = ROOT / "tests" / "fixtures" / "human_questions.jsonl"
PATH_SETS = {  # --paths: the two PipelineConfig overrides compared
    "decoding": {"old": {"answer_decoding": "full", "query_lookup": 0}, "new": {}},
    "stop": {"no stop": {"stop_at_failed_sentence": False}, "stop": {}},
    "dead": {"complete sentences": {}, "dead sentences": {}},
    "settled": {"listed values": {}, "settled spans": {}},
}


@contextmanager
def without_dead_sentences():
    """Session 8's stop: a sentence ends the body once complete and dropped, or listing a value under a field the
    knowledge lacks; not yet when no trained frame can begin it (ktune.pipeline.checker.Checker.dead)."""
    from ktune.pipeline.checker import Checker

    dead = Checker.dead
    Checker.dead = lambda self, text: False
    try:
        yield
    finally:
        Checker.dead = dead


@contextmanager
def listed_values_only():
    """Session 9's dead-sentence stop: a sentence is read as a frame's beginning only up to a complete value that a
    list separator follows, not yet up to any span no continuation can reach (a loop on a name or field name)."""
    from ktune.pipeline.checker import Checker

    settled = Checker._settled_cut
    Checker._settled_cut = lambda self, text: 0
    try:
        yield
    finally:
        Checker._settled_cut = settled


# a path's calls run inside its context
PATH_CONTEXTS = {"complete sentences": without_dead_sentences, "listed values": listed_values_only}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def read_questions(path: Path, n: int | None = None) -> list[dict]:
    from ktune.jsonl import read_jsonl

    rows = read_jsonl(path)
    return rows[:n] if n else rows


class PeakRss:
    """Peak resident memory between reset() and read(), from /proc/self/status (VmHWM; reset via clear_refs)."""

    def reset(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def read(self) -> float | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


def gold_hit(record: dict, answer) -> bool:
    """Retrieval: the gold entity (or an accepted alternative) and attribute, with knowledge fetched."""
    entities = {record["entity"], *record.get("alternatives", [])}
    return answer.linked_entity in entities and answer.query[1] == record["attribute"] and bool(answer.knowledge)


def answer_tokens(tokenizer, answer) -> int:
    """Tokens of the generated answer body (the provenance line is appended by ktune, not generated) + stop."""
    body = (answer.answer or "").rsplit("\n相关知识：", 1)[0]
    return len(tokenizer(body, add_special_tokens=False)["input_ids"]) + 1


def compare(pipelines: dict, records: list[dict], answer_n: int, batch_size: int, tokenizer) -> dict:
    from ktune.threads import CpuSampler

    rss, sampler = PeakRss(), CpuSampler()
    out = {name: {"stage1_b1_s": [], "answer_s": [], "answer_tokens": 0, "peak_rss_mb": 0.0} for name in pipelines}
    single: dict[str, list] = {name: [] for name in pipelines}
    questions = [r["question"] for r in records]
    def context(name):
        return PATH_CONTEXTS.get(name, nullcontext)()

    for qa in pipelines.values():  # warm-up: first-call costs (lazy heads, allocator) outside the timings
        qa.ask(questions[0])
    for q in questions:  # stage 1 + 2 at batch 1, alternating paths
        for name, qa in pipelines.items():
            rss.reset()
            t = time.perf_counter()
            qa.ask(q, with_answer=False)
            out[name]["stage1_b1_s"].append(time.perf_counter() - t)
            out[name]["peak_rss_mb"] = max(out[name]["peak_rss_mb"], rss.read() or 0.0)
    print("stage 1 at batch 1: " + ", ".join(f"{n} {len(v['stage1_b1_s']) / sum(v['stage1_b1_s']):.2f} q/s"
                                            for n, v in out.items()), flush=True)
    answered = [r for r in records if r["entity"] is not None][:answer_n]
    for r in answered:  # full answers, one question at a time, alternating paths
        for name, qa in pipelines.items():
            rss.reset()
            t = time.perf_counter()
            with context(name):
                a = qa.ask(r["question"])
            out[name]["answer_s"].append(time.perf_counter() - t)
            out[name]["peak_rss_mb"] = max(out[name]["peak_rss_mb"], rss.read() or 0.0)
            if not a.refused:
                out[name]["answer_tokens"] += answer_tokens(tokenizer, a)
                out[name].setdefault("answer_gen_s", 0.0)
                out[name]["answer_gen_s"] += a.timings.get("answer", 0.0)
            single[name].append(a)
        print(f"  answered {len(single[name])}/{len(answered)}: "
              + ", ".join(f"{n} {v['answer_s'][-1]:.2f}s" for n, v in out.items()), flush=True)
    batched = {}
    for name, qa in pipelines.items():  # stage 1 + 2 batched
        qa.config = replace(qa.config, batch_size=batch_size)
        qa.query_stage.config = qa.answer_stage.config = qa.config
        rss.reset()
        t = time.perf_counter()
        batched[name] = qa.ask_batch(questions, with_answer=False)
        out[name]["stage1_b16_s"] = time.perf_counter() - t
        out[name]["peak_rss_mb"] = max(out[name]["peak_rss_mb"], rss.read() or 0.0)
    others = sampler.other_busy_cores()
    for name, res in out.items():
        b1 = res.pop("stage1_b1_s")
        ans = res.pop("answer_s")
        res.update(
            stage1_qps_b1=len(b1) / sum(b1),
            stage1_qps_batch=len(questions) / res.pop("stage1_b16_s"),
            answer_p50_s=percentile(ans, 0.5),
            answer_p95_s=percentile(ans, 0.95),
            answer_n=len(ans),
            answer_tokens_per_s=res["answer_tokens"] / res["answer_gen_s"] if res.get("answer_gen_s") else None,
            retrieval_acc=sum(gold_hit(r, a) for r, a in zip(records, batched[name], strict=True))
            / max(1, sum(r["entity"] is not None for r in records)),
        )
    names = list(pipelines)
    a, b = names[0], names[1]
    same_query = sum(x.query == y.query and x.linked_entity == y.linked_entity
                     for x, y in zip(batched[a], batched[b], strict=True))
    same_answer = [x.answer == y.answer for x, y in zip(single[a], single[b], strict=True)]
    diffs = [{"question": x.question, a: x.answer, b: y.answer}
             for x, y in zip(single[a], single[b], strict=True) if x.answer != y.answer]
    return {"paths": out, "n_questions": len(questions), "batch_size": batch_size,
            "queries_identical": f"{same_query}/{len(questions)}",
            "answers_identical": f"{sum(same_answer)}/{len(same_answer)}", "answer_diffs": diffs,
            "other_processes_busy_cores": others}


def print_table(res: dict, threads: int) -> None:
    paths = res["paths"]
    names = list(paths)
    rows = [("stage-1 q/s, batch 1", "stage1_qps_b1", "{:.2f}"),
            (f"stage-1 q/s, batch {res['batch_size']}", "stage1_qps_batch", "{:.2f}"),
            ("full answer p50 s (single)", "answer_p50_s", "{:.2f}"),
            ("full answer p95 s (single)", "answer_p95_s", "{:.2f}"),
            ("answer tokens/s", "answer_tokens_per_s", "{:.1f}"),
            ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
            ("retrieval accuracy", "retrieval_acc", "{:.3f}")]
    print(f"| {threads} threads, {res['n_questions']} questions | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, key, fmt in rows:
        vals = [paths[n].get(key) for n in names]
        print(f"| {label} | " + " | ".join("-" if v is None else fmt.format(v) for v in vals) + " |")
    print(f"queries identical: {res['queries_identical']}; answer texts identical: {res['answers_identical']}")
    busy = res["other_processes_busy_cores"]
    if busy is not None:
        print(f"other processes kept {busy:.2f} cores busy on average during the run"
              + (" (the machine was NOT idle: compare the paths, not the absolute numbers)" if busy > 0.25 else ""))
    for d in res["answer_diffs"][:3]:
        print("differs:", json.dumps(d, ensure_ascii=False))


def set_mode(qa, mode: str, batch_size: int | None = None) -> None:
    qa.config = replace(qa.config, query_mode=mode, batch_size=batch_size or qa.config.batch_size)
    qa.query_stage.config = qa.answer_stage.config = qa.config


def score(records: list[dict], answers) -> dict:
    """Entity / attribute / retrieval accuracy on in-KB questions; refusal rate on the not-in-KB ones."""
    in_kb = [(r, a) for r, a in zip(records, answers, strict=True) if r["entity"] is not None]
    no_kb = [(r, a) for r, a in zip(records, answers, strict=True) if r["entity"] is None]
    ent = sum(a.linked_entity in {r["entity"], *r.get("alternatives", [])} for r, a in in_kb)
    att = sum(a.query[1] == r["attribute"] for r, a in in_kb)
    ret = sum(gold_hit(r, a) for r, a in in_kb)
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
        print(f"  {mode:9s} " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in out[mode].items()), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--kb", help="KB path (default location when omitted)")
    p.add_argument("--data", type=Path, help="dataset folder: questions with gold queries (default: human questions)")
    p.add_argument("--split", default="test_seen")
    p.add_argument("--n", type=int, default=24, help="questions for stage 1 (batch 1 and batched)")
    p.add_argument("--answer-n", type=int, default=16, help="in-KB questions answered one at a time per path")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", default="auto", help="torch threads: auto (physical cores) or N")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="int8: compare the fp32 defaults with the int8-quantized model (paths fp32 and int8)")
    p.add_argument("--paths", choices=PATH_SETS, default="decoding",
                   help="decoding: old vs new decoding (default); stop: stage 3 not stopped at the first dropped "
                        "sentence vs stopped (the default answer policy); dead: stopped once a sentence is complete "
                        "and dropped vs also once no trained frame can begin it (the default); settled: that "
                        "beginning read up to a listed value vs up to any span no continuation reaches (the default)")
    p.add_argument("--variants", action="store_true", help="also: stage-1 accuracy of every query mode (human set)")
    p.add_argument("--modes", default="free,greedy,beam,rerank,fallback")
    p.add_argument("--json", type=Path, help="also write the numbers to this file")
    p.add_argument("--base-url", help="also the openai backend against this server (path 'remote')")
    p.add_argument("--model", help="the model name the server serves")
    p.add_argument("--grammar-field", default="grammar", help="body field of the stage-1 grammar (default: grammar)")
    args = p.parse_args(argv)

    import torch

    from ktune.kb import KnowledgeBase
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig
    from ktune.threads import apply_threads
    from ktune.train.run import load_run

    threads = apply_threads(args.threads)
    t = time.perf_counter()
    run = load_run(Path(args.run), dtype=None if args.dtype == "auto" else args.dtype)
    kb = KnowledgeBase.open(args.kb)
    pipelines, grammar = {}, None
    models = {name: (run.model, overrides) for name, overrides in PATH_SETS[args.paths].items()}
    if args.quantize == "int8":
        from ktune.pipeline.quantize import quantize_int8

        quantized = load_run(Path(args.run), dtype="fp32").model
        quantize_int8(quantized)
        models = {"fp32": (run.model, {}), "int8": (quantized, {})}
    for name, (model, overrides) in models.items():
        qa = KnowledgeTunedQA(model, run.tokenizer, kb, run.prompt_format,
                              PipelineConfig(threads=threads, **overrides), run.info, grammar)
        grammar = qa.query_stage.grammar  # built once, shared
        pipelines[name] = qa
    if args.base_url:
        from ktune.pipeline.backend import OpenAIBackend

        backend = OpenAIBackend(args.base_url, args.model or "ktune", grammar_field=args.grammar_field)
        pipelines["remote"] = KnowledgeTunedQA(None, None, kb, run.prompt_format, PipelineConfig(threads=threads),
                                               run.info, backend=backend)
    kb.link("预热")  # the linker's indexes, outside the timings
    results = {"load_s": time.perf_counter() - t, "threads": torch.get_num_threads(),
               "dtype": str(next(run.model.parameters()).dtype), "cpu_count": os.cpu_count()}
    print(f"loaded in {results['load_s']:.1f}s; dtype {results['dtype']}, {results['threads']} threads", flush=True)
    source = args.data / f"{args.split}.jsonl" if args.data else HUMAN
    records = read_questions(source, args.n)
    results["questions"] = str(source)
    results.update(compare(pipelines, records, args.answer_n, args.batch_size, run.tokenizer))
    print_table(results, results["threads"])
    if args.variants:
        human = read_questions(HUMAN)
        print(f"stage-1 accuracy on {HUMAN.name} ({len(human)} questions):")
        results["variants"] = variants(list(pipelines.values())[1], human, args.modes.split(","), args.batch_size)
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
