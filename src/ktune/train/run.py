"""The run folder: what `ktune train` writes and what the pipeline loads.

    RUN/
      adapter/               PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)
      tokenizer/             the tokenizer used in training
      prompt_format.json     the exact prompt format (ktune.prompt.PromptFormat), reused at inference
      ktune.json             RunInfo: base model, method, KB version hash, schema, data version, config,
                             metrics, timings
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ktune import __version__
from ktune.errors import ConfigError
from ktune.paths import atomic_write_text
from ktune.prompt import PromptFormat

log = logging.getLogger(__name__)
INFO_FILE = "ktune.json"


@dataclass
class RunInfo:
    base_model: str
    method: str = "knowledge"  # knowledge | instruction
    kb_version: str = ""
    schema_version: str = ""
    data_version: str = ""
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    ktune_version: str = __version__
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def save(self, run_dir: str | Path) -> None:
        atomic_write_text(Path(run_dir) / INFO_FILE, json.dumps(asdict(self), ensure_ascii=False, indent=2))

    @classmethod
    def load(cls, run_dir: str | Path) -> RunInfo:
        path = Path(run_dir) / INFO_FILE
        if not path.is_file():
            raise ConfigError(f"{run_dir} is not a ktune run (no {INFO_FILE}); train one with `ktune train`")
        raw = json.loads(path.read_text(encoding="utf-8"))
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            log.warning("%s: ignoring unknown keys %s (written by a newer ktune?)", path, unknown)
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass
class LoadedRun:
    model: object  # a transformers/PEFT causal LM in eval mode
    tokenizer: object
    prompt_format: PromptFormat
    info: RunInfo
    path: Path


def load_run(run_dir: str | Path, *, device: str = "cpu", dtype: str | None = None, merge: bool = True) -> LoadedRun:
    """Load base model + adapter + tokenizer + prompt format of a run. (Implemented by the training stage.)"""
    from ktune.train.loading import load_run_model

    run_dir = Path(run_dir)
    info = RunInfo.load(run_dir)
    fmt = PromptFormat.from_pretrained(run_dir)
    model, tokenizer = load_run_model(run_dir, info, device=device, dtype=dtype, merge=merge)
    return LoadedRun(model, tokenizer, fmt, info, run_dir)
