"""`train(config) -> RunInfo`: the loop with progress bar, periodic generation checks and checkpoints, then the run folder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ktune.train import checkpoint as ckpt
from ktune.train.config import TrainConfig
from ktune.train.run import RunInfo
from ktune.train.trainer import Session, generation_check, prepare_out, setup, train_step

log = logging.getLogger(__name__)

StepCallback = Callable[[int, ckpt.LoopState], None]  # (step just finished, loop state); may raise to stop the run


def train(config: TrainConfig, *, callbacks: Sequence[StepCallback] = (), progress: bool = True) -> RunInfo:
    """Knowledge-tune config.base on config.data and write the run folder config.out; returns its RunInfo."""
    import torch

    from ktune.threads import ADAPTIVE, AdaptiveThreads, apply_threads

    threads = torch.get_num_threads()
    apply_threads(config.threads)
    log.info("torch threads: %d (%s)", torch.get_num_threads(), config.threads)
    if config.threads == ADAPTIVE:
        callbacks = [*callbacks, AdaptiveThreads()]
    try:
        s = setup(config)
        state = prepare_out(s)
        state = _loop(s, state, callbacks, progress)
        return finalize(s, state)
    finally:
        torch.set_num_threads(threads)


def _loop(s: Session, state: ckpt.LoopState, callbacks: Sequence[StepCallback], progress: bool) -> ckpt.LoopState:
    from tqdm.auto import tqdm

    cfg, acc = s.config, s.accelerator
    s.loss_module.train()
    bar = tqdm(total=s.total_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True,
               disable=not progress or not acc.is_main_process)
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
    t_start, trained_before, start = time.perf_counter(), state.train_s, state.step
    for step in range(state.step, s.total_steps):
        loss, tokens = train_step(s, step)
        done = step + 1
        state.tokens += tokens
        state.history.append([done, round(loss, 5), round(s.scheduler.get_last_lr()[0], 8)])
        state.train_s = trained_before + time.perf_counter() - t_start
        state.step = done
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)
        if done % cfg.log_every == 0:
            _log_progress(done, s.total_steps, loss, state.train_s - trained_before, done - start, bar.disable)
        if cfg.eval_every and done % cfg.eval_every == 0 and done < s.total_steps:
            result = generation_check(s, done)
            if result:
                state.evals.append(result)
        if cfg.save_every and done % cfg.save_every == 0 and done < s.total_steps:
            _save(s, state)
        for callback in callbacks:
            callback(done, state)
        if budget_s and state.train_s - trained_before > budget_s:
            log.warning("stopping at step %d of %d: --max-minutes %.1f reached", done, s.total_steps, cfg.max_minutes)
            state.stopped_early = f"max_minutes {cfg.max_minutes} reached at step {done}"
            break
    bar.close()
    return state


def _log_progress(done: int, total: int, loss: float, elapsed: float, steps_here: int, quiet_bar: bool) -> None:
    """Without a progress bar (logs, CI), one INFO line per log_every steps with loss and ETA."""
    rate = elapsed / max(1, steps_here)
    msg = "step %d/%d loss %.4f (%.2f s/step, ETA %.0f s)"
    (log.info if quiet_bar else log.debug)(msg, done, total, loss, rate, rate * (total - done))


def _save(s: Session, state: ckpt.LoopState) -> None:
    s.accelerator.wait_for_everyone()
    ckpt.save_checkpoint(s.out, s.model, s.optimizer, s.scheduler, state,
                         keep=s.config.keep_checkpoints, rank=s.accelerator.process_index,
                         is_main=s.accelerator.is_main_process)


def finalize(s: Session, state: ckpt.LoopState) -> RunInfo:
    """Final generation check, then adapter/, tokenizer/, prompt_format.json, ktune.json and the curve PNG."""
    acc = s.accelerator
    acc.wait_for_everyone()
    final = generation_check(s, state.step)
    if final:
        state.evals.append(final)
    info = run_info(s, state)
    sharded = sharded_adapter_state(s)  # collective under DeepSpeed / FSDP: every rank calls it
    if acc.is_main_process:
        out = s.out
        s.model.save_pretrained(str(out / "adapter"), state_dict=sharded)
        save_run_tokenizer(s.tokenizer, out / "tokenizer")
        s.fmt.save_pretrained(out)
        info.save(out)
        from ktune.train.plot import plot_curves

        plot_curves(state.history, state.evals, out / "curve.png")
        log.info("run written to %s (final loss %.4f)", out, info.metrics.get("final_loss", float("nan")))
    acc.wait_for_everyone()
    return info


def sharded_adapter_state(s: Session) -> dict | None:
    """The full adapter state gathered from shards (DeepSpeed ZeRO / FSDP); None for plain or DDP training."""
    from accelerate.utils import DistributedType

    if s.accelerator.distributed_type not in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        return None
    full = s.accelerator.get_state_dict(s.loss_module)
    return {k[len("model."):]: v for k, v in full.items() if k.startswith("model.") and "lora_" in k}


def peak_rss_mb() -> int | None:
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    except ImportError:  # Windows
        return None


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def save_run_tokenizer(tokenizer, directory: Path) -> None:
    from ktune.train.tiny import save_tokenizer

    if type(tokenizer).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend"):
        save_tokenizer(tokenizer, directory)
    else:
        tokenizer.save_pretrained(str(directory))


def run_info(s: Session, state: ckpt.LoopState) -> RunInfo:
    cfg = s.config
    config = cfg.to_dict()
    config.update(base_path=s.base_info["path"], resolved_dtype=s.base_info["dtype"],
                  dtype_reason=s.base_info["dtype_reason"], device_used=s.base_info["device"],
                  query_head_used=s.base_info.get("query_head"),
                  processes=s.accelerator.num_processes, total_steps=s.total_steps, sources=cfg.sources)
    history, evals = state.history, state.evals
    metrics = {"data": s.counts, "final_loss": history[-1][1] if history else None, "steps_done": state.step,
               "loss_history": history, "evals": evals}
    if evals:
        last = evals[-1]
        metrics.update(dev_entity_acc=last["entity_acc"], dev_attribute_acc=last["attribute_acc"],
                       dev_query_acc=last["query_acc"])
    if state.stopped_early:
        metrics["stopped_early"] = state.stopped_early
    train_s = state.train_s
    steps = max(1, state.step)
    timings = dict(s.timings, train_s=round(train_s, 2), s_per_step=round(train_s / steps, 3),
                   tokens_per_s=round(state.tokens / train_s, 1) if train_s else None,
                   eval_s=round(sum(e.get("seconds", 0) for e in evals), 2), peak_rss_mb=peak_rss_mb(),
                   threads=_torch_threads())
    m = s.manifest
    return RunInfo(base_model=cfg.base, method=cfg.method, kb_version=m.get("kb_version", ""),
                   schema_version=m.get("schema_version", ""), data_version=m.get("data_version", ""),
                   config=config, metrics=metrics, timings=timings)
