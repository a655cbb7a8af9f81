"""Export a run for llama.cpp: the base model's GGUF + the run's LoRA adapter written as a GGUF LoRA adapter.

llama.cpp's server loads them together (`llama-server -m base.gguf --lora adapter.gguf`, or xllamacpp's
`CommonParams.lora_adapters`). The adapter is written with the `gguf` package (tensor names from its name map,
the layout of llama.cpp's convert_lora_to_gguf.py: `{tensor}.weight.lora_a` [r, in], `.lora_b` [out, r], the
`adapter.lora.alpha` key, scale alpha / r). A full HF -> GGUF conversion (tokenizer included) needs llama.cpp's
convert_hf_to_gguf.py, which neither `gguf` nor `xllamacpp` ships: the base must be a packaged GGUF model
(ktune.models.PACKAGED; the demo's Gemma-3-270M is), which is the very file the run was trained from.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

from ktune.errors import ConfigError

log = logging.getLogger(__name__)

BASE_FILE, ADAPTER_FILE = "base.gguf", "adapter.gguf"
_PREFIX, _A, _B = "base_model.model.", ".lora_A.weight", ".lora_B.weight"


# GGUF value types: 0-7 u8 i8 u16 i16 u32 i32 f32 bool, 8 string, 9 array, 10-12 u64 i64 f64
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_header(path: str | Path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """A GGUF file's scalar and string metadata (arrays skipped) and its tensor shapes (ggml order), read from the
    header only: gguf.GGUFReader parses every vocabulary entry too (17 s for Gemma's 262k tokens)."""
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos = 0

        def take(fmt: str):
            nonlocal pos
            value = struct.unpack_from(fmt, buf, pos)
            pos += struct.calcsize(fmt)
            return value[0]

        def string() -> str:
            nonlocal pos
            n = take("<Q")
            pos += n
            return bytes(buf[pos - n:pos]).decode("utf-8", "replace")

        def value(kind: int):
            nonlocal pos
            if kind == 8:
                return string()
            if kind == 9:
                elem, n = take("<I"), take("<Q")
                if elem == 8:
                    for _ in range(n):
                        length = take("<Q")  # (not `pos += take(...)`: take moves pos first)
                        pos += length
                else:
                    pos += n * struct.calcsize(_SCALAR[elem])
                return None
            return take(_SCALAR[kind])

        if bytes(buf[:4]) != b"GGUF":
            raise ConfigError(f"{path} is not a GGUF file")
        pos = 4
        take("<I")  # version
        n_tensors, n_kv = take("<Q"), take("<Q")
        fields = {}
        for _ in range(n_kv):
            key = string()
            fields[key] = value(take("<I"))
        shapes = {}
        for _ in range(n_tensors):
            name = string()
            dims = tuple(take("<Q") for _ in range(take("<I")))
            take("<I")  # type
            take("<Q")  # offset
            shapes[name] = dims
    return fields, shapes


def write_lora_gguf(adapter_dir: str | Path, base_gguf: str | Path, out: str | Path) -> int:
    """The PEFT LoRA adapter in `adapter_dir` as a GGUF adapter for `base_gguf`'s architecture; returns the number
    of adapted tensors."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("rank_pattern") \
            or config.get("alpha_pattern") or config.get("modules_to_save"):
        raise ConfigError(f"{adapter_dir}: only a plain LoRA adapter (no DoRA, rank/alpha patterns or saved modules) "
                          "can be written as a GGUF adapter")
    fields, base_shapes = read_header(base_gguf)  # shapes in ggml order: (in, out)
    arch = fields["general.architecture"]
    blocks = fields[f"{arch}.block_count"]
    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(arch_id, blocks)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    rank = int(config["r"])
    # llama.cpp scales by alpha / r; rsLoRA's alpha / sqrt(r) is the same with alpha * sqrt(r)
    alpha = float(config["lora_alpha"]) * (math.sqrt(rank) if config.get("use_rslora") else 1.0)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    count = 0
    for key in sorted(k for k in tensors if k.endswith(_A)):
        module = key[len(_PREFIX):-len(_A)] if key.startswith(_PREFIX) else key[:-len(_A)]
        target = names.get_name(module)
        if target is None or f"{target}.weight" not in base_shapes:
            raise ConfigError(f"{adapter_dir}: LoRA module {module} has no tensor in {base_gguf}")
        a, b = tensors[key].astype(np.float32), tensors[key[:-len(_A)] + _B].astype(np.float32)
        if (a.shape[1], b.shape[0]) != base_shapes[f"{target}.weight"]:
            raise ConfigError(f"{adapter_dir}: {module} is {a.shape[1]}->{b.shape[0]}, the base's "
                              f"{target}.weight is {base_shapes[f'{target}.weight']}")
        writer.add_tensor(f"{target}.weight.lora_a", a)
        writer.add_tensor(f"{target}.weight.lora_b", b)
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


def export_gguf(run_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    """OUT/base.gguf (the packaged base the run was trained from) + OUT/adapter.gguf + prompt_format.json and
    ktune.json; atomic. Returns the paths written."""
    from ktune.models import PACKAGED, packaged_gguf
    from ktune.train.run import RunInfo

    run_dir, out = Path(run_dir), Path(out)
    info = RunInfo.load(run_dir)
    if info.base_model not in PACKAGED:
        raise ConfigError(
            f"{run_dir}: base model {info.base_model!r} is no packaged GGUF model ({', '.join(sorted(PACKAGED))}); "
            "converting a Hugging Face model to GGUF needs llama.cpp's convert_hf_to_gguf.py, which ktune does not "
            "ship: use `ktune export --merge` and convert the merged folder with it")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"export folder {out} is not empty; choose another or pass --overwrite")
    base = packaged_gguf(info.base_model)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        os.link(base, tmp / BASE_FILE)
    except OSError:
        shutil.copyfile(base, tmp / BASE_FILE)
    n = write_lora_gguf(run_dir / "adapter", base, tmp / ADAPTER_FILE)
    for name in ("prompt_format.json", "ktune.json"):
        shutil.copyfile(run_dir / name, tmp / name)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    log.info("GGUF export: %s (base) + %s (%d LoRA tensors)", out / BASE_FILE, out / ADAPTER_FILE, n)
    return {"run": str(run_dir), "base": str(out / BASE_FILE), "adapter": str(out / ADAPTER_FILE), "lora_tensors": n}
