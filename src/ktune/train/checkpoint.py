"""Training checkpoints: trainable weights, optimizer, scheduler, RNG and position, written atomically.

RUN/checkpoints/step-000040/ is written as a temp folder and renamed into place, then RUN/checkpoints/latest
(one line) is replaced atomically, so a kill -9 at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ktune.paths import atomic_write_text

log = logging.getLogger(__name__)
CKPT_DIR = "checkpoints"
LATEST = "latest"


@dataclass
class LoopState:
    """Where the training loop stands; a checkpoint's state.json holds it, in the same keys as before this class
    (step, history, evals, tokens, train_s), so checkpoints written before it still resume."""

    step: int = 0  # optimizer steps done
    history: list[list] = field(default_factory=list)  # [step, loss, lr] per step
    evals: list[dict] = field(default_factory=list)  # generation checks
    tokens: int = 0  # target tokens trained on
    train_s: float = 0.0  # training time, summed over resumed sessions
    data_version: str = ""  # the dataset trained on ("" in checkpoints written before it was recorded)
    stopped_early: str | None = None  # why the loop stopped before the last step (never in a checkpoint)

    def to_json(self) -> dict:
        out = asdict(self)
        if out["stopped_early"] is None:
            out.pop("stopped_early")
        return out

    @classmethod
    def from_json(cls, raw: dict, origin: str = "state") -> LoopState:
        """A state read back from JSON; a key left out takes its default, one this version does not know is
        ignored (said once)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            log.warning("%s: ignoring loop-state keys this version does not know: %s", origin, unknown)
        if "step" not in raw:
            from ktune.errors import ConfigError

            raise ConfigError(f"{origin} has no step; the checkpoint is damaged: start a fresh --out")
        return cls(**{k: v for k, v in raw.items() if k in known})


def trainable_state(model) -> dict:
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, state: LoopState, *, keep: int = 2,
                    rank: int = 0, is_main: bool = True) -> Path:
    """Write the checkpoint of `state.step` (every rank writes its own RNG file; the main process the rest)."""
    import torch
    from safetensors.torch import save_file

    step = state.step
    root = Path(run_dir) / CKPT_DIR
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / f"rng_{rank}.pt")
        (tmp / "state.json").write_text(json.dumps(state.to_json(), ensure_ascii=False), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(root / LATEST, final.name + "\n")
        _prune(root, keep)
        log.info("checkpoint %s", final)
    return final


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_data_version(run_dir: Path) -> str | None:
    """The dataset version the run's latest checkpoint was trained on: None without a checkpoint, "" when the
    checkpoint predates recording it or its state cannot be read (resuming it then says what is wrong)."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return None
    try:
        raw = json.loads((latest / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(raw.get("data_version", "")) if isinstance(raw, dict) else ""


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / CKPT_DIR
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path, model, optimizer, scheduler, *, rank: int = 0) -> LoopState:
    """Restore weights, optimizer, scheduler and RNG from a checkpoint; returns its loop state."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = sorted(set(weights) - set(params))
    if missing:
        from ktune.errors import ConfigError

        raise ConfigError(f"checkpoint {path} does not match the model (unknown parameters {missing[:3]}...); "
                          "resume with the same --base and LoRA settings, or start a fresh --out")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / "rng_0.pt"  # ranks start from one seed and stay in step
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    state_file = path / "state.json"
    return LoopState.from_json(json.loads(state_file.read_text(encoding="utf-8")), origin=str(state_file))
