"""Data-parallel training: two CPU processes (torchrun, gloo; what `accelerate launch` does on GPUs) train one run."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_two_cpu_processes_train_one_run_that_loads_and_predicts(tiny_data, tmp_path):
    from ktune.train import load_run
    from ktune.train.generation import greedy_queries
    from ktune.train.tiny import build_tiny_model, dataset_texts

    base = build_tiny_model(tmp_path / "base", dataset_texts(tiny_data))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ktune", "-q", "train",
           "--base", str(base), "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--steps", "150",
           "--lr", "3e-3", "--batch-size", "4", "--dtype", "fp32", "--device", "cpu", "--lora-dropout", "0",
           "--answer-fraction", "0", "--eval-every", "0", "--save-every", "50", "--threads", "1", "--json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "ktune.json").read_text(encoding="utf-8"))
    assert info["config"]["processes"] == 2
    assert info["metrics"]["steps_done"] == 150
    run = load_run(tmp_path / "run")
    assert greedy_queries(run.model, run.tokenizer, run.prompt_format, ["高血压应该挂什么科？"]) == [("高血压", "就诊科室")]
