"""The few-shot task: knowledge-tune on nested subsets (50 ... all) and measure retrieval against training size."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from ktune.data.dataset import Dataset
from ktune.errors import ConfigError
from ktune.eval.items import load_test_items
from ktune.eval.retrieval import evaluate_system

log = logging.getLogger(__name__)
FEWSHOT_SPLITS = ("test_seen", "test_unseen", "test_no_knowledge")


def available_sizes(data_dir: str | Path) -> list[int]:
    """The N of every DIR/fewshot/train_N.jsonl, ascending."""
    return Dataset.load(data_dir).fewshot_sizes()


def cpu_schedule(base_cfg, n: int, epochs: float = 2.0, max_steps: int = 200, max_minutes: float | None = 5.0):
    """A CPU-sized schedule: `epochs` passes over N records, capped at `max_steps` steps and `max_minutes`."""
    per_step = base_cfg.batch_size * base_cfg.grad_accum
    steps = max(10, min(max_steps, int(epochs * n / per_step + 0.999)))
    return dataclasses.replace(base_cfg, subset=n, steps=steps, save_every=0, eval_every=0, resume=False,
                               max_minutes=max_minutes)


def run_fewshot_suite(kb, data_dir, out_dir, base_cfg, sizes: list[int] | None = None, limit: int | None = 100,
                      train_fn=None, epochs: float = 2.0, max_steps: int = 200, max_minutes: float | None = 5.0,
                      progress: bool = True, full_run: str | Path | None = None) -> dict:
    """Train one run per size under out_dir/fewshot/N and score it; returns {"points": {N: {split: metrics}}}.

    `base_cfg` is a ktune.train.TrainConfig (base model, dtype, LoRA settings); `train_fn` defaults to
    ktune.train.train and may be replaced (tests pass a stub, the demo a shorter schedule). `full_run`, a run
    trained on the whole training split (the run under evaluation), is scored on the same items as the last
    point ("all"), with its own schedule.
    """
    from ktune.eval.systems import PipelineSystem

    if train_fn is None:
        from ktune.train import train as train_fn
    sizes = sizes or available_sizes(data_dir)
    n_full = _run_records(full_run) if full_run is not None else None
    if n_full is not None:  # the full run stands for every subset as large as its training split
        sizes = [n for n in sizes if n < n_full]
    if not sizes and n_full is None:
        raise ConfigError(f"no {data_dir}/fewshot/train_N.jsonl files; build the dataset with `ktune data build`")
    splits = load_test_items(data_dir, kb, splits=FEWSHOT_SPLITS, limit=limit, real=False)
    points, timings = {}, {}
    for n in sizes:
        run_dir = Path(out_dir) / "fewshot" / f"n{n}"
        cfg = cpu_schedule(base_cfg, n, epochs, max_steps, max_minutes)
        cfg = dataclasses.replace(cfg, data=str(data_dir), out=str(run_dir))
        t0 = time.perf_counter()
        log.info("few-shot: training on %d records for %d steps -> %s", n, cfg.steps, run_dir)
        info = train_fn(cfg)
        done = (getattr(info, "metrics", None) or {}).get("steps_done", cfg.steps)
        t1 = time.perf_counter()
        system = PipelineSystem(run_dir, kb, name=f"knowledge-tuned n={n}")
        result = evaluate_system(system, splits, kb, Path(out_dir) / "fewshot" / f"n{n}" / "eval", progress)
        points[str(n)] = {s: result[s] for s in FEWSHOT_SPLITS if s in result}
        points[str(n)]["steps"] = done
        timings[str(n)] = {"train_s": round(t1 - t0, 1), "eval_s": round(time.perf_counter() - t1, 1)}
    if full_run is not None:
        point, timings[str(n_full)] = _full_point(kb, full_run, splits, Path(out_dir) / "fewshot" / "all" / "eval",
                                                  progress)
        points[str(n_full)] = point
        sizes = sizes + [n_full]
    return {"suite": "fewshot", "sizes": sizes, "splits": {s: len(v) for s, v in splits.items()},
            "schedule": {"epochs": epochs, "max_steps": max_steps, "max_minutes": max_minutes}, "points": points, "timings_s": timings,
            "paper": {"200": 0.807}}


def _run_records(run_dir) -> int:
    from ktune.train import RunInfo

    n = int(((RunInfo.load(run_dir).metrics or {}).get("data") or {}).get("records") or 0)
    if n < 1:
        raise ConfigError(f"{run_dir}/ktune.json records no training size (metrics.data.records)")
    return n


def _full_point(kb, run_dir, splits, out: Path, progress: bool) -> tuple[dict, dict]:
    """(metrics per split + steps, timings) of the run trained on the whole training split."""
    from ktune.eval.systems import PipelineSystem
    from ktune.train import RunInfo

    t0 = time.perf_counter()
    name = f"knowledge-tuned n={_run_records(run_dir)} (all)"
    result = evaluate_system(PipelineSystem(run_dir, kb, name=name), splits, kb, out, progress)
    point = {s: result[s] for s in FEWSHOT_SPLITS if s in result}
    point.update(steps=(RunInfo.load(run_dir).metrics or {}).get("steps_done"), run=str(run_dir))
    return point, {"train_s": None, "eval_s": round(time.perf_counter() - t0, 1)}


def plot_fewshot(fs: dict, path: Path) -> Path | None:
    """Retrieval accuracy (95% CI band) against training size, seen and unseen entities."""
    sizes = [int(n) for n in fs.get("points", {})]
    if not sizes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for split in ("test_seen", "test_unseen"):
        ps = [fs["points"][str(n)].get(split, {}).get("retrieval_accuracy") for n in sizes]
        if not any(p and p["value"] is not None for p in ps):
            continue
        xs = [n for n, p in zip(sizes, ps, strict=True) if p and p["value"] is not None]
        ps = [p for p in ps if p and p["value"] is not None]
        ax.plot(xs, [p["value"] for p in ps], marker="o", label=f"{split} (n={fs['splits'].get(split, '?')})")
        ax.fill_between(xs, [p["ci95"][0] for p in ps], [p["ci95"][1] for p in ps], alpha=0.2)
    ax.scatter([200], [0.807], marker="x", color="gray", label="paper: 80.7% at 200")
    ax.set_xscale("log")
    ax.set_xlabel("training records")
    ax.set_ylabel("retrieval accuracy (95% Wilson CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
