"""Training speed: seconds/step, training tokens/s and peak RSS per setting (dtype, batching, LM-head mode).

    python bench/train.py --data data/ [--base gemma3-270m] [--steps 4] [--batch-size 8] [--json]

Each setting runs in its own process (so peak RSS is its own) for one warm-up step plus --steps timed steps
of the real training loop (ktune.train.trainer.setup / train_step). Settings:
  bf16 / fp32                    weights dtype
  group / pack / random          length-grouped batches, grouped + packed rows, plain shuffled batches (padding)
  target / full / query-vocab    LM head on target positions only, on every position (the usual way), or on
                                 target positions with query-step targets over the KB's query vocabulary only
                                 (--query-head kb; needs the dataset's KB: --kb or the default KB)
bf16 settings are skipped on a CPU without native bf16 (AVX512-BF16/AMX), where bf16 matmuls are ~60x slower.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

SETTINGS = [
    {"dtype": "fp32", "batching": "group", "head": "target"},
    {"dtype": "fp32", "batching": "pack", "head": "target"},
    {"dtype": "fp32", "batching": "pack", "head": "query-vocab"},
    {"dtype": "fp32", "batching": "group", "head": "full"},
    {"dtype": "bf16", "batching": "pack", "head": "target"},
    {"dtype": "bf16", "batching": "pack", "head": "query-vocab"},
]
QUERY_HEAD = {"target": "full", "full": "full", "query-vocab": "kb"}  # TrainConfig.query_head per setting


class FullHeadLoss:
    """The LM head on every position (what a stock SFT trainer does), for comparison."""

    def __init__(self, model):
        self.model = model

    def __call__(self, input_ids, labels, weights, attention_mask=None, position_ids=None, query_mask=None):
        from ktune.train.loss import full_logits_loss

        loss = full_logits_loss(self.model, input_ids, attention_mask, labels, position_ids=position_ids)
        n = (labels[:, 1:] != -100).sum()
        return loss * n, n.float(), n


def one(args, setting: dict) -> dict:
    """Run inside the child process: time the real loop for one setting."""
    import torch

    from ktune.train import TrainConfig
    from ktune.train.trainer import setup, train_step

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(base=args.base, data=args.data, out=out, steps=args.steps + 1, batch_size=args.batch_size,
                          dtype=setting["dtype"], batching=setting["batching"], device=args.device,
                          answer_fraction=args.answer_fraction, max_length=args.max_length, eval_every=0,
                          save_every=0, subset=args.subset, threads=args.threads,
                          query_head=QUERY_HEAD[setting["head"]], kb=args.kb)
        if args.threads is not None:
            torch.set_num_threads(args.threads or 1)
        s = setup(cfg)
        if setting["head"] == "full":
            s.loss_module = FullHeadLoss(s.model)
        train_step(s, 0)  # warm-up
        tokens, t0 = 0, time.perf_counter()
        for step in range(1, args.steps + 1):
            tokens += train_step(s, step)[1]
        dt = time.perf_counter() - t0
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(setting, s_per_step=round(dt / args.steps, 3), tokens_per_s=round(tokens / dt, 1),
                tokens_per_step=round(tokens / args.steps, 1), peak_rss_mb=round(peak_mb), device=str(s.accelerator.device),
                threads=torch.get_num_threads())


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("KTUNE_DATA", "data"))
    p.add_argument("--base", default="gemma3-270m")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=160)
    p.add_argument("--answer-fraction", type=float, default=0.1)
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--device", default="auto")
    p.add_argument("--kb", help="the dataset's KB, for the query-vocab setting (default: the default KB)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 is faster on a busy CPU)")
    p.add_argument("--only", type=int, help="run only setting number N (used by the child processes)")
    p.add_argument("--infer", metavar="RUN", help="instead: greedy query decoding speed, base vs RUN's LoRA model")
    p.add_argument("--questions", type=int, default=32, help="--infer: dev questions to decode")
    p.add_argument("--all-variants", action="store_true", help="--infer: also unmerged and without KV cache")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def infer(args) -> list[dict]:
    """Questions/s of greedy query decoding: base model, LoRA unmerged, LoRA merged, merged without KV cache."""
    from ktune.data.dataset import Dataset
    from ktune.decoding import GreedyDecoder
    from ktune.train import load_run
    from ktune.train.loading import load_base

    questions = [r.question for r in Dataset.load(args.data).records("dev")[:args.questions]]
    rows = []

    def timed(name, model, tok, fmt):
        """Stop-at-newline decoding (what the pipeline does) and a fixed 16 new tokens (a like-for-like speed)."""
        import torch

        prompts = [fmt.query_prompt(q) for q in questions]
        decoder = GreedyDecoder(model, tok, fmt)
        decoder.texts(prompts[:2], 4)  # warm-up
        t0 = time.perf_counter()
        texts = decoder.texts(prompts, 48)
        dt = time.perf_counter() - t0
        ids, mask = decoder.encode_prompts(prompts[:16])
        t1 = time.perf_counter()
        with torch.no_grad():
            decoder.generate_ids(ids, mask, 16, min_new_tokens=16)
        fixed = time.perf_counter() - t1
        mean_chars = sum(map(len, texts)) / len(texts)
        rows.append({"model": name, "questions_per_s": round(len(prompts) / dt, 2), "seconds": round(dt, 2),
                     "mean_output_chars": round(mean_chars, 1), "fixed16_tokens_per_s": round(16 * 16 / fixed, 1)})
        print(f"{name:<28} {rows[-1]['questions_per_s']:>6.2f} questions/s ({dt:.1f} s, {mean_chars:.1f} chars out); "
              f"fixed 16x16 tokens: {rows[-1]['fixed16_tokens_per_s']} tokens/s", flush=True)

    from ktune.prompt import PromptFormat
    from ktune.train.run import RunInfo

    dtype = {"bfloat16": "bf16", "float32": "fp32"}.get(RunInfo.load(args.infer).config.get("resolved_dtype"), "auto")
    base, tok, _ = load_base(args.base, device="cpu", dtype=dtype)
    timed("base model", base.eval(), tok, PromptFormat())
    del base
    run = load_run(args.infer, merge=True)
    timed("LoRA, merged", run.model, run.tokenizer, run.prompt_format)
    if args.all_variants:
        run.model.config.use_cache = False
        run.model.generation_config.use_cache = False
        timed("LoRA, merged, no KV cache", run.model, run.tokenizer, run.prompt_format)
        del run
        unmerged = load_run(args.infer, merge=False)
        timed("LoRA, unmerged", unmerged.model, unmerged.tokenizer, unmerged.prompt_format)
    return rows


def main(argv=None) -> int:
    args = parse(argv)
    if args.infer:
        rows = infer(args)
        if args.json:
            print(json.dumps(rows, indent=1))
        return 0
    if args.only is not None:
        print(json.dumps(one(args, SETTINGS[args.only])))
        return 0
    from ktune.train.loading import cpu_has_fast_bf16, resolve_device

    rows = []
    for i, setting in enumerate(SETTINGS):
        if setting["dtype"] == "bf16" and resolve_device(args.device) == "cpu" and not cpu_has_fast_bf16():
            print(f"setting {setting} skipped: this CPU has no native bf16", file=sys.stderr)
            continue
        cmd = [sys.executable, __file__, *(argv or sys.argv[1:]), "--only", str(i)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"setting {setting} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if not args.json:
            r = rows[-1]
            print(f"{r['dtype']:<5} {r['batching']:<7} {r['head']:<11} head: {r['s_per_step']:>7.3f} s/step "
                  f"{r['tokens_per_s']:>8.1f} tokens/s  {r['tokens_per_step']:>6.0f} tokens/step  "
                  f"peak RSS {r['peak_rss_mb']} MB  ({r['device']}, {r['threads']} threads)", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
