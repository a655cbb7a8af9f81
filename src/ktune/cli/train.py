"""`ktune train`: LoRA knowledge-tuning of a base model on a dataset folder (flags mirror TrainConfig)."""

from __future__ import annotations

import dataclasses
import os
import sys

from ktune.cli.common import add_json_option, emit_json
from ktune.paths import DEFAULT_KB_HELP

HELP = {
    "base": "base model: gemma3-270m (packaged demo model), a local HF folder, or a hub id",
    "data": "dataset folder written by `ktune data build`",
    "out": "run folder to write (adapter/, tokenizer/, prompt_format.json, ktune.json, curve.png)",
    "method": "knowledge: query step (L_e+L_attr) + answer step (L_r); instruction: question -> answer (L_it)",
    "steps": "optimizer steps (0: from --epochs)",
    "subset": "train on N records (DIR/fewshot/train_N.jsonl when it exists, else the first N)",
    "target_modules": "LoRA target modules, comma-separated, or all-linear",
    "query_weight": "loss weight of query-step target tokens",
    "answer_weight": "loss weight of answer-step target tokens",
    "answer_fraction": "share of in-KB records that also get an answer-step example",
    "batching": "group: length-grouped batches; pack: grouped, then packed into fewer rows; random: shuffled",
    "prompt_format": "auto: the tokenizer's chat template when it has one, else the plain format",
    "query_head": "query-step softmax: kb (the KB's query vocabulary, as the pipeline decodes; ~20x less LM-head "
                  "work on Gemma-3), full (whole vocabulary), auto (kb when the dataset's KB is at hand)",
    "kb": "the dataset's KB, for --query-head",
    "eval_every": "generation check (dev entity/attribute accuracy) every N steps (0: at the end only)",
    "save_every": "checkpoint every N steps (0: none)",
    "resume": "continue from the latest checkpoint in --out",
    "max_minutes": "stop (and save the run) after this many minutes of training",
    "threads": "torch CPU threads: auto (the physical cores; $KTUNE_THREADS overrides), N, or adaptive (re-checks "
               "other processes' CPU use every 20 steps)",
}
SKIP = {"sources"}
SHOWN_DEFAULTS = {"kb": DEFAULT_KB_HELP}  # defaults resolved later, in words


def add_parser(sub) -> None:
    from ktune.train.config import TrainConfig

    p = sub.add_parser("train", help="LoRA knowledge-tuning (query + answer steps) of a causal LM",
                       description="Knowledge-tune a base model. Settings: defaults <- --config FILE (JSON/YAML) "
                       "<- flags; ktune.json records where each came from. `accelerate launch -m ktune train ...` "
                       "runs data-parallel (configs/accelerate/*.yaml).")
    p.add_argument("--config", metavar="FILE", help="JSON or YAML file of settings (a `train:` section or top level)")
    p.add_argument("--demo", action="store_true", help="start from the demo preset (Gemma-3-270M, CPU, <= 15 min)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for f in dataclasses.fields(TrainConfig):
        if f.name in SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = HELP.get(f.name, f.name.replace("_", " "))
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action="store_true", default=None, help=help_text)
        else:
            kind = {int: int, float: float}.get(type(default), str)
            if f.name == "subset":
                kind = int
            elif f.name == "threads":
                kind = str
            elif f.name == "max_minutes":
                kind = float
            p.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.split("_")[-1].upper(),
                           help=f"{help_text} (default: {SHOWN_DEFAULTS.get(f.name, default)})")
    add_json_option(p)
    p.set_defaults(func=run)


def overrides_from(args) -> dict:
    from ktune.train.config import TrainConfig

    out = {name: getattr(args, name, None) for name in TrainConfig.field_names()}
    tm = out.get("target_modules")
    if tm and tm != "all-linear":
        out["target_modules"] = [m.strip() for m in tm.split(",") if m.strip()]
    return out


def run(args) -> int:
    from ktune.train import TrainConfig, train

    overrides = overrides_from(args)
    base = None
    if args.demo:
        from ktune.train.presets import demo_config

        base = demo_config(overrides.get("data") or "data", overrides.get("out") or "runs/demo")
    config = TrainConfig.from_sources(args.config, overrides, base=base)
    info = train(config, progress=not args.no_progress and sys.stderr.isatty())
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under `accelerate launch` only the main process reports
    if args.json:
        d = dataclasses.asdict(info)
        d["metrics"] = {k: v for k, v in d["metrics"].items() if k != "loss_history"}
        emit_json(d)
        return 0
    m, t = info.metrics, info.timings
    print(f"run: {config.out}")
    print(f"steps {m['steps_done']}, final loss {m['final_loss']}, {t['train_s']:.0f} s training "
          f"({t['s_per_step']} s/step, {t['tokens_per_s']} tokens/s)")
    if "dev_entity_acc" in m:
        print(f"dev generation check: entity {m['dev_entity_acc']:.3f}, attribute {m['dev_attribute_acc']:.3f}, "
              f"query {m['dev_query_acc']:.3f}")
    if m.get("stopped_early"):
        print(f"stopped early: {m['stopped_early']}")
    return 0
