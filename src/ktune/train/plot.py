"""The run's loss / accuracy curve as a PNG (skipped with a log line when matplotlib is missing)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def plot_curves(history: list, evals: list[dict], path: Path) -> Path | None:
    """Training loss per step (left axis) and dev entity / attribute accuracy (right axis)."""
    if not history:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no curve plot (pip install matplotlib)")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h[0] for h in history], [h[1] for h in history], color="tab:blue", lw=1, label="target loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    if evals:
        ax2 = ax.twinx()
        steps = [e["step"] for e in evals]
        ax2.plot(steps, [e["entity_acc"] for e in evals], "o-", color="tab:green", label="dev entity acc")
        ax2.plot(steps, [e["attribute_acc"] for e in evals], "s--", color="tab:orange", label="dev attribute acc")
        ax2.set_ylim(0, 1.02)
        ax2.set_ylabel("accuracy")
        ax2.legend(loc="center right")
    ax.legend(loc="upper right")
    ax.set_title("knowledge-tuning")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
