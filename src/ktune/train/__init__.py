"""Stage 2, knowledge-tuning: LoRA on any causal LM for the query step (L_e + L_attr) and answer step (L_r).

    from ktune.train import TrainConfig, train, load_run
    info = train(TrainConfig(base="gemma3-270m", data="data/", out="runs/x"))
    run = load_run("runs/x")          # model, tokenizer, prompt_format, info
"""

from ktune.train.config import TrainConfig
from ktune.train.run import LoadedRun, RunInfo, load_run


def train(config: TrainConfig, **kwargs) -> RunInfo:
    """Train and write the run folder (see ktune.train.loop.train); imports torch lazily."""
    from ktune.train.loop import train as _train

    return _train(config, **kwargs)


def demo_config(data_dir, out) -> TrainConfig:
    """The TrainConfig `make demo` uses (Gemma-3-270M on CPU, <= 15 minutes on 2 cores)."""
    from ktune.train.presets import demo_config as _demo

    return _demo(data_dir, out)


__all__ = ["LoadedRun", "RunInfo", "TrainConfig", "demo_config", "load_run", "train"]
