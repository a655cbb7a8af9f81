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
from pathlib import Path

from ktune.paths import atomic_write_text

log = logging.getLogger(__name__)
CKPT_DIR = "checkpoints"
LATEST = "latest"


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


def save_checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, state: dict, *, keep: int = 2,
                    rank: int = 0, is_main: bool = True) -> Path:
    """Write checkpoint `step` (every rank writes its own RNG file; the main process writes the rest)."""
    import torch
    from safetensors.torch import save_file

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
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, ensure_ascii=False), encoding="utf-8")
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


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / CKPT_DIR
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path, model, optimizer, scheduler, *, rank: int = 0) -> dict:
    """Restore weights, optimizer, scheduler and RNG from a checkpoint; returns its state (step, history...)."""
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
    return json.loads((path / "state.json").read_text(encoding="utf-8"))
