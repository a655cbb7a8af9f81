"""The suites `ktune eval` runs, as plain functions the demo can call: systems in, metrics.json + report out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ktune.data.dataset import MANIFEST, Dataset
from ktune.errors import ConfigError
from ktune.eval.items import load_test_items
from ktune.eval.retrieval import evaluate_system

log = logging.getLogger(__name__)

BASELINES = ("bm25-word", "bm25-char", "dense", "rules")
MODEL_SYSTEMS = ("model", "model-free", "oracle")
ALL_SYSTEMS = BASELINES + MODEL_SYSTEMS
SUITES = ("retrieval", "answers", "fewshot", "all")


@dataclass
class EvalConfig:
    """What `ktune eval` evaluates; validated here so the CLI and the demo share one set of checks."""

    data_dir: str | None
    run_dir: str | None = None
    out: str | None = None
    suite: str = "retrieval"
    systems: tuple[str, ...] = ALL_SYSTEMS
    predictions: tuple[str, ...] = ()  # `ktune predict` files scored as extra systems
    baseline_run: str | None = None  # instruction-tuned run for the answers suite
    limit: int | None = None
    real: bool = True  # also the shipped real-style splits (real_dev, real_test), always in full
    items: tuple[str, ...] = ()  # labelled question files: evaluated instead of the dataset's splits
    progress: bool = True
    extra: dict = field(default_factory=dict)
    backend: object = None  # what generates the run's queries and answers (ktune.pipeline.backend); None: local
    quantize: str = "none"  # the run's PipelineConfig.quantize (int8: answer decode steps; retrieval is fp32's)

    def __post_init__(self):
        if self.suite not in SUITES:
            raise ConfigError(f"suite {self.suite!r} is not one of {', '.join(SUITES)}")
        from ktune.pipeline.config import QUANTIZE

        if self.quantize not in QUANTIZE:
            raise ConfigError(f"quantize {self.quantize!r} is not one of {', '.join(QUANTIZE)}")
        bad = [s for s in self.systems if s not in ALL_SYSTEMS]
        if bad:
            raise ConfigError(f"unknown system(s) {bad}; choose from {', '.join(ALL_SYSTEMS)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive integer, got {self.limit}")
        for path in self.items:
            if not Path(path).is_file():
                raise ConfigError(f"no labelled question file {path}")
        if self.items and self.suite != "retrieval":
            raise ConfigError("--items is scored by the retrieval suite; run it with --suite retrieval")
        if self.data_dir is None and not self.items:
            raise ConfigError("say what to evaluate on: --data DIR (a dataset folder from `ktune data build`) "
                              "or --items FILE.jsonl (labelled questions)")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ConfigError(f"no dataset folder {self.data_dir}; build one with `ktune data build --out DIR`")
        if self.out is None and self.run_dir is None:
            raise ConfigError("say where to write the report: give --out DIR (or --run RUN to write into the run)")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(self.run_dir) / "eval"


def build_systems(kb, cfg: EvalConfig) -> list:
    """The requested systems; model systems only when a run is given (said once, not silently)."""
    from ktune.eval.baselines import BM25Retriever, DenseRetriever, RuleSystem
    from ktune.eval.systems import PipelineSystem, PredictionsFile

    out = []
    for key in cfg.systems:
        if key == "bm25-word":
            out.append(BM25Retriever(kb, "word", progress=cfg.progress))
        elif key == "bm25-char":
            out.append(BM25Retriever(kb, "char", progress=cfg.progress))
        elif key == "dense":
            out.append(DenseRetriever(kb, progress=cfg.progress))
        elif key == "rules":
            out.append(RuleSystem(kb))
        elif cfg.run_dir is None:
            continue
        elif key == "model":
            out.append(PipelineSystem(cfg.run_dir, kb, query_mode=cfg.extra.get("query_mode", "fallback"),
                                      backend=cfg.backend, quantize=cfg.quantize))
        elif key == "model-free":
            out.append(PipelineSystem(cfg.run_dir, kb, query_mode="free", backend=cfg.backend, quantize=cfg.quantize))
        elif key == "oracle" and cfg.backend is not None:
            log.info("the oracle-entity ablation runs the run's model in this process: skipped with a remote backend")
        elif key == "oracle":
            from ktune.eval.baselines.oracle import OracleEntitySystem

            out.append(OracleEntitySystem(cfg.run_dir, kb))
    if cfg.run_dir is None and any(k in MODEL_SYSTEMS for k in cfg.systems) and not cfg.predictions:
        log.info("no --run given: evaluating the baselines only")
    out.extend(PredictionsFile(p) for p in cfg.predictions)
    return out


def read_manifest(data_dir) -> dict:
    if data_dir is None:
        return {}
    try:
        manifest = Dataset.load(data_dir).manifest
    except ConfigError as exc:
        manifest, reason = {}, str(exc)
    else:
        reason = f"no {Path(data_dir) / MANIFEST}"
    if not manifest:
        log.warning("%s: the report will not name the dataset version", reason)
    return manifest


def provenance_warnings(kb, cfg: EvalConfig, manifest: dict) -> list[str]:
    """Say when the run, the dataset and the KB do not belong together (the figures may then mislead)."""
    out = []
    if manifest.get("kb_version") and manifest["kb_version"] != kb.version:
        out.append(f"dataset built on KB {manifest['kb_version']} but evaluated on KB {kb.version}")
    if cfg.run_dir:
        from ktune.train.run import RunInfo

        info = RunInfo.load(cfg.run_dir)
        if info.data_version and manifest.get("data_version") and info.data_version != manifest["data_version"]:
            out.append(f"run trained on dataset {info.data_version} but tested on dataset {manifest['data_version']}: "
                       "test items may overlap its training items")
        if info.kb_version and info.kb_version != kb.version:
            out.append(f"run trained against KB {info.kb_version} but evaluated on KB {kb.version}")
    for w in out:
        log.warning("%s", w)
    return out


def run_retrieval_suite(kb, data_dir, run_dir=None, limit=None, out=None, systems=ALL_SYSTEMS, predictions=(),
                        progress: bool = True, write_report: bool = True, real: bool = True, items=()) -> dict:
    """Every system on the same test items; returns (and writes) the metrics dict. The demo's entry point."""
    cfg = EvalConfig(str(data_dir) if data_dir else None, str(run_dir) if run_dir else None,
                     str(out) if out else None, systems=tuple(systems), predictions=tuple(predictions), limit=limit,
                     progress=progress, real=real, items=tuple(str(p) for p in items))
    return retrieval_metrics(kb, cfg, write_report=write_report)


def load_eval_splits(kb, cfg: EvalConfig) -> dict:
    """{split: items}: the labelled files (one split each, named after the file) when given, else the dataset's
    test splits (up to `limit` each) and the real-style splits in full."""
    if cfg.items:
        from ktune.eval.items import load_labelled

        splits = {}
        for path in cfg.items:
            name = Path(path).stem
            if name in splits:
                raise ConfigError(f"two --items files are both named {name}; rename one")
            splits[name] = load_labelled(path, kb, name, cfg.limit)
        return splits
    return load_test_items(cfg.data_dir, kb, limit=cfg.limit, real=cfg.real, real_limit=None)


def retrieval_metrics(kb, cfg: EvalConfig, write_report: bool = True) -> dict:
    splits = load_eval_splits(kb, cfg)
    out_dir = cfg.out_dir
    metrics = {
        "suite": "retrieval",
        "kb_version": kb.version,
        "data_dir": str(cfg.data_dir) if cfg.data_dir else None,
        "items": list(cfg.items),
        "dataset": read_manifest(cfg.data_dir),
        "run": str(cfg.run_dir) if cfg.run_dir else None,
        "splits": {s: len(v) for s, v in splits.items()},
        "systems": {},
        "timings_s": {},
        "notes": {},
    }
    metrics["warnings"] = provenance_warnings(kb, cfg, metrics["dataset"])
    for system in build_systems(kb, cfg):
        metrics["notes"][system.name] = getattr(system, "note", "")
        t0 = time.perf_counter()
        log.info("retrieval: %s on %s", system.name, ", ".join(f"{s} ({len(v)})" for s, v in splits.items()))
        metrics["systems"][system.name] = evaluate_system(system, splits, kb, out_dir, cfg.progress)
        metrics["timings_s"][system.name] = round(time.perf_counter() - t0, 2)
    if write_report:
        from ktune.eval.report import write_report as _write

        _write({"retrieval": metrics}, out_dir)
    return metrics
