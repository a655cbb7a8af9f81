"""The training loop: LoRA on the query step (L_e + L_attr) and answer step (L_r), checkpoints, resume, generation checks."""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ktune.data.dataset import Dataset, DatasetRecord
from ktune.errors import ConfigError
from ktune.prompt import PromptFormat
from ktune.train import checkpoint as ckpt
from ktune.train.config import TrainConfig
from ktune.train.data import build_examples, collate, epoch_batches
from ktune.train.generation import query_accuracy

log = logging.getLogger(__name__)


@dataclass
class Session:
    """Everything the loop needs, built once by `setup`."""

    config: TrainConfig
    out: Path
    accelerator: object
    model: object  # PEFT model (unwrapped)
    loss_module: object  # TargetLoss, possibly wrapped by accelerate (DDP/FSDP/DeepSpeed)
    tokenizer: object
    fmt: PromptFormat
    examples: list
    counts: dict
    dev: list
    manifest: dict
    base_info: dict
    optimizer: object = None
    scheduler: object = None
    total_steps: int = 0
    batches_per_epoch: int = 0
    timings: dict = field(default_factory=dict)
    query_ids: list | None = None  # the query vocabulary of query-step targets (None: the whole vocabulary)
    _epoch: tuple = (-1, [])  # (epoch, its batches): epoch_batches is a pure function, cached per epoch

    def batches_of(self, epoch: int) -> list[list[int]]:
        if self._epoch[0] != epoch:
            lengths = [len(ex.input_ids) for ex in self.examples]
            cfg = self.config
            self._epoch = (epoch, epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.batching))
        return self._epoch[1]


def choose_prompt_format(config: TrainConfig, tokenizer) -> PromptFormat:
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if config.prompt_format == "chat" and not has_chat:
        raise ConfigError(f"--prompt-format chat: the tokenizer of {config.base!r} has no chat template; use plain or auto")
    use_chat = config.prompt_format == "chat" or (config.prompt_format == "auto" and has_chat)
    return PromptFormat(name="ktune-chat" if use_chat else "ktune-plain", chat_template=use_chat)


def lora_model(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_modules, bias="none", task_type="CAUSAL_LM")
    try:
        peft_model = get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ConfigError(f"LoRA target_modules {config.target_modules!r} do not fit {type(model).__name__}: {exc}") from exc
    if config.gradient_checkpointing:
        peft_model.gradient_checkpointing_enable()
        peft_model.enable_input_require_grads()
    return peft_model


def lr_schedule(optimizer, warmup: int, total: int):
    """Linear warmup, then cosine decay to 10%: transformers' cosine-with-min-LR schedule, run one step ahead
    (warmup + 1, total + 1) so that step k (from 0) trains at lr * (k + 1) / (warmup + 1) during the warmup, never
    at 0, and the decay reaches its end at `total`. The scheduler's state (checkpointed) is its position."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup + 1, total + 1, min_lr_rate=0.1, last_epoch=0)


def setup(config: TrainConfig) -> Session:
    """Load data, base model and tokenizer; wrap LoRA; prepare with accelerate."""
    import torch
    from accelerate import Accelerator

    from ktune.train.loading import load_base, resolve_device
    from ktune.train.loss import TargetLoss

    config.require_paths()
    t0 = time.perf_counter()
    dataset = Dataset.load(config.data)
    records, manifest = dataset.records("train", config.subset), dataset.manifest
    accelerator = Accelerator(cpu=resolve_device(config.device) == "cpu")
    model, tokenizer, base_info = load_base(config.base, device=str(accelerator.device), dtype=config.dtype)
    fmt = choose_prompt_format(config, tokenizer)
    examples, counts = build_examples(records, tokenizer, fmt, method=config.method, max_length=config.max_length,
                                      answer_fraction=config.answer_fraction, answer_refusals=config.answer_refusals,
                                      seed=config.seed)
    dev = _dev_records(config, dataset, records)
    query_ids, base_info["query_head"] = query_head_ids(config, manifest, tokenizer, fmt, examples)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    peft_model = lora_model(model, config)
    s = Session(config, Path(config.out), accelerator, peft_model, TargetLoss(peft_model, query_ids), tokenizer, fmt,
                examples, counts, dev, manifest, base_info, query_ids=query_ids)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    s.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    world = accelerator.num_processes
    s.batches_per_epoch = max(1, math.ceil(len(examples) / config.batch_size) // world)
    s.total_steps = config.steps or max(1, math.ceil(config.epochs * s.batches_per_epoch / config.grad_accum))
    s.scheduler = lr_schedule(s.optimizer, config.warmup_steps, s.total_steps)
    s.loss_module, s.optimizer = accelerator.prepare(s.loss_module, s.optimizer)
    s.timings["load_s"] = round(time.perf_counter() - t0, 2)
    n_train = sum(p.numel() for p in params)
    log.info("training %s (%s) on %d examples %s: %d steps x batch %d x accum %d x %d process(es); "
             "%.2fM trainable parameters; prompt format %s", config.base, config.method, len(examples), counts,
             s.total_steps, config.batch_size, config.grad_accum, world, n_train / 1e6, fmt.name)
    return s


def query_head_ids(config: TrainConfig, manifest: dict, tokenizer, fmt: PromptFormat, examples) -> tuple[list | None, dict]:
    """The query vocabulary (ktune.query_vocab) for query-step targets, or None (whole vocabulary), and why."""
    from ktune.kb import KnowledgeBase
    from ktune.paths import default_kb
    from ktune.query_vocab import query_token_ids

    def whole(reason: str) -> tuple[None, dict]:
        if config.query_head == "kb":
            raise ConfigError(f"--query-head kb: {reason}; pass --kb PATH (the dataset's KB) or --query-head full")
        log.info("query step over the whole vocabulary: %s", reason)
        return None, {"mode": "full", "reason": reason}

    if config.query_head == "full":
        return None, {"mode": "full", "reason": "requested"}
    if config.method != "knowledge":
        return whole(f"method {config.method} has no query step")
    target = str(config.kb or default_kb())
    if "://" not in target and not Path(target).is_file():
        return whole(f"no KB at {target}")
    with KnowledgeBase.open(target) as kb:
        if manifest.get("kb_version") and kb.version != manifest["kb_version"]:
            return whole(f"the KB at {target} is version {kb.version}, the dataset was built from {manifest['kb_version']}")
        ids = set(query_token_ids(kb, tokenizer, fmt))
    outside = {t for ex in examples if ex.step == "query" for t in ex.labels if t >= 0 and t not in ids}
    if outside:  # query targets the KB does not spell (e.g. a KB edited since the build): keep them trainable
        log.warning("%d query-target tokens are outside the KB's query vocabulary; added to it", len(outside))
    log.info("query step over the KB's query vocabulary: %d of %d tokens (KB %s)", len(ids), len(tokenizer), target)
    return sorted(ids | outside), {"mode": "kb", "kb": target, "tokens": len(ids | outside), "outside": len(outside)}


def _dev_records(config: TrainConfig, dataset: Dataset, train_records: list[DatasetRecord]) -> list[DatasetRecord]:
    if config.method != "knowledge":
        return []
    if config.eval_split == "train":
        dev = list(train_records)
        random.Random(config.seed).shuffle(dev)
        return dev[:config.eval_samples]
    try:
        dev = dataset.records(config.eval_split)
    except ConfigError:
        log.warning("no %s split in %s: the generation check uses training records", config.eval_split, config.data)
        dev = list(train_records)
    rng = random.Random(config.seed)
    rng.shuffle(dev)
    return dev[:config.eval_samples]


def micro_batches(s: Session, step: int):
    """The grad_accum micro-batches of one optimizer step on this process (a pure function of step)."""
    cfg, acc = s.config, s.accelerator
    weights = {"query": cfg.query_weight, "answer": cfg.answer_weight, "instruction": 1.0}
    out = []
    for j in range(cfg.grad_accum):
        mb = step * cfg.grad_accum + j
        epoch, pos = divmod(mb, s.batches_per_epoch)
        batches = s.batches_of(epoch)
        idx = batches[(pos * acc.num_processes + acc.process_index) % len(batches)]
        pad = s.tokenizer.pad_token_id if s.tokenizer.pad_token_id is not None else 0
        batch = collate([s.examples[i] for i in idx], pad, weights, pack=cfg.batching == "pack")
        out.append({k: v.to(acc.device) if hasattr(v, "to") else v for k, v in batch.items()})
    return out


def train_step(s: Session, step: int) -> tuple[float, int]:
    """One optimizer step over grad_accum micro-batches; returns (mean weighted target loss, tokens seen)."""
    batches = micro_batches(s, step)
    denom = sum(float(((b["labels"][:, 1:] != -100) * b["weights"][:, 1:]).sum()) for b in batches)
    total, tokens = 0.0, 0
    for b in batches:
        tokens += b.pop("n_tokens")
        loss_sum, _, _ = s.loss_module(**b)
        s.accelerator.backward(loss_sum / max(denom, 1e-8))
        total += float(loss_sum.detach())
    if s.config.max_grad_norm:
        s.accelerator.clip_grad_norm_([p for p in s.model.parameters() if p.requires_grad], s.config.max_grad_norm)
    s.optimizer.step()
    s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)
    return total / max(denom, 1e-8), tokens


def generation_check(s: Session, step: int) -> dict | None:
    if not s.dev or not s.accelerator.is_main_process:
        return None
    t0 = time.perf_counter()
    result = query_accuracy(s.model, s.tokenizer, s.fmt, s.dev, query_ids=s.query_ids)
    result.update(step=step, seconds=round(time.perf_counter() - t0, 2))
    log.info("step %d generation check on %d dev questions: entity %.3f, attribute %.3f, query %.3f",
             step, result["n"], result["entity_acc"], result["attribute_acc"], result["query_acc"])
    return result


def prepare_out(s: Session) -> ckpt.LoopState:
    """Create or resume the run folder; returns the restored loop state (step 0 for a fresh run)."""
    out = s.out
    latest = ckpt.latest_checkpoint(out) if s.config.resume else None
    data_version = s.manifest.get("data_version", "")
    if latest is not None:
        state = ckpt.load_checkpoint(latest, s.model, s.optimizer, s.scheduler, rank=s.accelerator.process_index)
        if state.data_version and data_version and state.data_version != data_version:
            raise ConfigError(f"--resume: {latest} was trained on dataset {state.data_version}, --data is "
                              f"{data_version}; pass the same dataset or start a fresh --out")
        state.data_version = data_version
        log.info("resuming from %s (step %d of %d)", latest, state.step, s.total_steps)
        return state
    if s.config.resume:
        log.warning("--resume: no checkpoint in %s, starting from step 0", out)
    if out.exists() and any(out.iterdir()) and s.accelerator.is_main_process:
        if not (out / "ktune.json").is_file() and not (out / ckpt.CKPT_DIR).is_dir():
            raise ConfigError(f"--out {out} exists and is not a ktune run; choose an empty or new folder")
        shutil.rmtree(out / ckpt.CKPT_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    return ckpt.LoopState(data_version=data_version)
