"""Named training presets; `demo_config` is what `make demo` trains (Gemma-3-270M on CPU, <= 15 minutes on 2 cores)."""

from __future__ import annotations

from ktune.train.config import TrainConfig


def demo_config(data_dir, out) -> TrainConfig:
    """Gemma-3-270M on CPU: mostly query-step examples (the part retrieval depends on), some answer steps.

    max_minutes stops the run (and still writes it) when a slow or busy machine cannot finish the steps, so the
    demo never trains past 15 minutes. dtype auto: bf16 only on CPUs with native bf16 (AVX512-BF16/AMX);
    on an AVX2-only CPU bf16 steps measured 189.5 s against 2.9 s in fp32. Query-step targets are scored over
    the KB's query vocabulary (query_head auto), as the pipeline decodes them.
    """
    cfg = TrainConfig(
        base="gemma3-270m",
        data=str(data_dir),
        out=str(out),
        method="knowledge",
        steps=380,
        lr=5e-4,
        warmup_steps=20,
        batch_size=8,
        grad_accum=1,
        max_length=160,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules="all-linear",
        query_weight=1.0,
        answer_weight=1.0,
        answer_fraction=0.1,
        batching="pack",  # same loss as one example per row (tested), 24% less time per step here
        dtype="auto",  # bf16 where the CPU runs it natively (AVX512-BF16/AMX), else fp32
        device="cpu",
        eval_every=120,
        eval_samples=32,
        save_every=60,
        seed=0,
        max_minutes=14.0,
        threads="auto",  # the physical cores (ktune.threads); never lowered for the run from one load sample
    )
    cfg.sources = {k: "preset:demo" if v == "python" else v for k, v in cfg.sources.items()}
    return cfg
