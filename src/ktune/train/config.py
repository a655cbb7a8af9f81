"""TrainConfig: every training setting, validated, loadable from JSON/YAML with overrides, recording each setting's source."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ktune.config_file import load_config_file
from ktune.errors import ConfigError
from ktune.threads import parse_threads
from ktune.train.loading import DTYPES

METHODS = ("knowledge", "instruction")
BATCHING = ("group", "pack", "random")
DEVICES = ("auto", "cpu", "cuda")
PROMPT_FORMATS = ("auto", "plain", "chat")
QUERY_HEADS = ("auto", "kb", "full")


@dataclass
class TrainConfig:
    """LoRA knowledge-tuning settings (see `ktune train --help` for each one)."""

    base: str = ""
    data: str = ""
    out: str = ""
    method: str = "knowledge"  # knowledge: query step (L_e + L_attr) + answer step (L_r); instruction: L_it
    steps: int = 0  # optimizer steps; 0 -> derived from epochs
    epochs: float = 1.0
    subset: int | None = None  # N training records: DIR/fewshot/train_N.jsonl when it exists, else the first N
    lr: float = 3e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256  # longer examples are skipped (counted in metrics)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    query_weight: float = 1.0  # loss weight of query-step tokens (L_e + L_attr)
    answer_weight: float = 1.0  # loss weight of answer-step tokens (L_r)
    answer_fraction: float = 1.0  # share of in-KB records that also get an answer-step example
    answer_refusals: bool = False  # also train the answer step on records without knowledge (target: refusal)
    batching: str = "group"  # group: length-grouped batches; pack: grouped, then packed rows; random: shuffled
    dtype: str = "auto"
    device: str = "auto"
    prompt_format: str = "auto"  # auto: the chat template when the tokenizer has one, else the plain format
    # query-step softmax: "kb" over the query vocabulary of the dataset's KB (ktune.query_vocab: what the pipeline
    # decodes queries from; ~20x less LM-head work on Gemma-3), "full" over the whole vocabulary, "auto": kb when
    # the dataset's KB is at hand (--kb, $KTUNE_KB or the default KB, same version as the dataset), else full
    query_head: str = "auto"
    kb: str | None = None  # the dataset's KB (for query_head); default: $KTUNE_KB or $KTUNE_HOME/kb/cmekg.sqlite
    gradient_checkpointing: bool = False
    seed: int = 0
    eval_every: int = 50  # generation check (query-step entity/attribute accuracy) every N steps; 0: only at the end
    eval_samples: int = 64
    eval_split: str = "dev"
    save_every: int = 100  # checkpoint every N steps; 0: none
    keep_checkpoints: int = 2
    resume: bool = False
    log_every: int = 10
    # torch CPU threads (ktune.threads): None / 0 / "auto" = the physical cores ($KTUNE_THREADS overrides);
    # N; "adaptive" = start at the physical cores, re-check other processes' CPU use every 20 steps
    threads: int | str = "auto"
    max_minutes: float | None = None  # stop early (and save) past this much training time
    sources: dict = field(default_factory=dict, compare=False)  # setting -> default | file:PATH | cli

    def __post_init__(self):
        if not self.sources:  # built in Python: a setting is "default" or "python"
            defaults = {f.name: f.default for f in fields(self) if f.name != "sources"}
            self.sources = {k: "default" if getattr(self, k) == v else "python" for k, v in defaults.items()}
        self._check_choice("method", METHODS)
        self._check_choice("batching", BATCHING)
        self._check_choice("dtype", DTYPES)
        self._check_choice("prompt_format", PROMPT_FORMATS)
        self._check_choice("query_head", QUERY_HEADS)
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device {self.device!r} is not one of {DEVICES} (or cuda:N)")
        for name in ("batch_size", "grad_accum", "max_length", "lora_r", "lora_alpha", "eval_samples",
                     "keep_checkpoints", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("steps", "warmup_steps", "eval_every", "save_every"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.steps == 0 and not self.epochs > 0:
            raise ConfigError(f"set steps > 0 or epochs > 0 (got steps={self.steps}, epochs={self.epochs})")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not 0 <= self.answer_fraction <= 1:
            raise ConfigError(f"answer_fraction must be in [0, 1], got {self.answer_fraction!r}")
        if self.query_weight < 0 or self.answer_weight < 0 or self.query_weight + self.answer_weight == 0:
            raise ConfigError(f"loss weights must be >= 0 and not both 0 (query_weight={self.query_weight}, "
                              f"answer_weight={self.answer_weight})")
        self.threads = parse_threads(self.threads)
        if self.subset is not None and int(self.subset) < 1:
            raise ConfigError(f"subset must be >= 1 records, got {self.subset!r}")

    def _check_choice(self, name: str, choices: tuple) -> None:
        if getattr(self, name) not in choices:
            raise ConfigError(f"{name} {getattr(self, name)!r} is not one of {choices}")

    def require_paths(self) -> None:
        """The settings a run cannot start without (checked at train time, not at construction)."""
        for name, hint in (("base", "--base MODEL"), ("data", "--data DIR"), ("out", "--out RUN")):
            if not getattr(self, name):
                raise ConfigError(f"missing {name}: pass {hint} (or set it in --config FILE)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("sources")
        return d

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "sources"]

    @classmethod
    def from_sources(cls, file: str | Path | None = None, overrides: dict | None = None, base: TrainConfig | None = None):
        """Defaults (or `base`) <- config file <- overrides (CLI flags); `sources` says where each came from."""
        values = base.to_dict() if base else {}
        sources = dict(base.sources) if base else {}
        if file:
            from_file = load_config_file(file, "train")
            unknown = sorted(set(from_file) - set(cls.field_names()))
            if unknown:
                raise ConfigError(f"unknown training setting {unknown[0]!r} in config file {file}; "
                                  f"valid: {', '.join(cls.field_names())}")
            for key, value in from_file.items():
                values[key] = value
                sources[key] = f"file:{file}"
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
                sources[key] = "cli"
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown training settings {unknown}; valid: {cls.field_names()}")
        cfg = cls(**values)
        cfg.sources = {name: sources.get(name, "default") for name in cls.field_names()}
        return cfg
