"""Weight quantization for CPU inference: `PipelineConfig.quantize`.

  none  the run's weights as loaded (fp32 on a CPU by default)
  int8  every linear layer of the decoder body (attention and MLP projections) gets a dynamic int8 copy (int8
        weights per output channel, PyTorch's x86/fbgemm kernels) that runs the answer stage's decode steps,
        each token quantized on its own range (Int8TokenLinear); prompts and stage 1 (which decides what is
        looked up) keep fp32, and so do the embedding and the tied LM head (stage 3's draft-and-verify reads
        the same rows as before). 1.3-1.6x faster single answers; an answer can then depend on which other
        questions share its batch, so the default is none (a server's concurrent answers equal its sequential
        ones only in fp32)
  auto  int8 on a CPU with fp32 weights where PyTorch has a quantized engine, else none

An int8 decode step reads a quarter of the body's weight bytes. Answer tokens can differ from fp32's (the values
an answer states are copied from the KB and claim-checked either way); bench/pipeline.py --quantize int8 prints
speed, retrieval and answer agreement against fp32 on your machine. Where PyTorch has no quantized engine (not
x86 or ARM) the model stays as loaded and a warning says so.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from ktune.pipeline.precision import int8_steps_on
from ktune.query_vocab import body_of

log = logging.getLogger(__name__)


def quantize_engine() -> str | None:
    """The quantized engine this PyTorch build runs on this CPU (x86, fbgemm, qnnpack), or None."""
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    for name in ("x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    return None


class Int8TokenLinear(nn.Module):
    """nn.Linear that runs the answer stage's decode steps (ktune.pipeline.precision.int8_steps) as a dynamic int8
    linear, each token quantized on its own range in one kernel call; prompts and stage 1 run its fp32 weights.

    A dynamic int8 call quantizes its whole input on one scale, set by the largest value of any token of any row:
    over left-padded batches most of the precision was lost (measured: stage-1 retrieval 94% -> 13%). Here each
    token is mapped onto [-1, 1] by its own range (x = mid + half * x', so W x = half * W x' + mid * W.sum(1))
    and an anchor row [-1, 1, 0, ...] fixes the call's range, so no row sets another's scale. Measured on
    real_dev retrieval (fp32 93.1): int8 stage-1 steps 92.1, int8 prompts as well 91.2, so both stay fp32.

    Not batch-independent: the fp32 parts (attention over padded rows) differ from a row computed alone in the
    last bits, which fp32's argmax absorbs and int8's rounding of the next layer's input does not (measured at
    64 concurrent served clients: 16 of 64 answers differed from the sequential ones, 32-48 of 64 with int8
    prompts as well; fp32 0 of 64)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        plain = nn.Linear(linear.in_features, linear.out_features, bias=False)  # the bias is added after scaling
        plain.weight = linear.weight
        with warnings.catch_warnings():  # torch.ao's eager quantization warns that it is deprecated for torchao
            warnings.simplefilter("ignore")
            self.int8 = torch.ao.nn.quantized.dynamic.Linear.from_float(
                _with_qconfig(plain), use_precomputed_fake_quant=False)
        self.weight, self.bias = linear.weight, linear.bias  # fp32, for prompts (more than one position per row)
        self.register_buffer("row_sums", linear.weight.detach().sum(1), persistent=False)  # W @ (c, c, ...) = c W.sum(1)
        anchor = torch.zeros(1, linear.in_features)
        anchor[0, 0], anchor[0, 1] = -1.0, 1.0
        self.register_buffer("anchor", anchor, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not int8_steps_on() or (x.dim() > 2 and x.shape[-2] > 1):  # stage 1, or a prompt: fp32
            return nn.functional.linear(x, self.weight, self.bias)
        flat = x.reshape(-1, x.shape[-1])
        low, high = torch.aminmax(flat, dim=-1, keepdim=True)
        mid, half = (high + low) / 2, ((high - low) / 2).clamp_min_(1e-12)
        # each token mapped onto [-1, 1] (its own range, as a one-token dynamic call would quantize it)
        # clamped: (high - mid) / half rounds to 1 + 1e-7 in about 1 call of 12, and any value past the anchor's
        # range would set the call's scale for every row
        unit = ((flat - mid) / half).clamp_(-1.0, 1.0)
        y = self.int8(torch.cat([unit, self.anchor]))[:-1].mul_(half).addmm_(mid, self.row_sums[None])
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])


def _with_qconfig(linear: nn.Linear) -> nn.Linear:
    linear.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    return linear


def quantize_int8(model: nn.Module) -> bool:
    """Make every nn.Linear of the decoder body a per-token dynamic int8 linear (Int8TokenLinear), in place.
    The model must be a loaded fp32 causal LM on the CPU (a merged run). False when it cannot run here."""
    engine = quantize_engine()
    if engine is None:
        log.warning("quantize int8: this PyTorch has no quantized CPU engine; keeping the weights as loaded")
        return False
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        log.warning("quantize int8 needs fp32 weights on the CPU (got %s on %s); keeping them", param.dtype,
                    param.device.type)
        return False
    torch.backends.quantized.engine = engine
    body = body_of(model)
    targets = [(parent, name, child) for parent in body.modules() for name, child in parent.named_children()
               if type(child) is nn.Linear]
    for parent, name, child in targets:
        setattr(parent, name, Int8TokenLinear(child))
    log.info("quantize int8: %d linear layers of the decoder body (engine %s); LM head and embeddings unchanged",
             len(targets), engine)
    return True
