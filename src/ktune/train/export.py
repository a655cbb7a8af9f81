"""Export a run as a merged full model (base + LoRA folded in) that loads with plain transformers or vLLM."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ktune.errors import ConfigError
from ktune.train.run import load_run

log = logging.getLogger(__name__)


def export_merged(run_dir: str | Path, out: str | Path, *, dtype: str | None = None, overwrite: bool = False) -> Path:
    """Write OUT/ = merged model + tokenizer + prompt_format.json + ktune.json (with merged_from); atomic."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"export folder {out} is not empty; choose another or pass --overwrite")
    run = load_run(run_dir, dtype=dtype, merge=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    run.model.save_pretrained(tmp)
    from ktune.train.loop import save_run_tokenizer

    save_run_tokenizer(run.tokenizer, tmp)
    run.prompt_format.save_pretrained(tmp)
    info = json.loads((Path(run_dir) / "ktune.json").read_text(encoding="utf-8"))
    info["merged_from"] = str(Path(run_dir).resolve())
    (tmp / "ktune.json").write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    log.info("merged model written to %s", out)
    return out
