"""The dtype a run is served in when none is asked for."""

import pytest

from ktune.train.loading import inference_dtype


@pytest.mark.parametrize("trained", ["bfloat16", "float32", None])
def test_runs_load_in_fp32_on_cpu_whatever_they_trained_in_so_answers_do_not_depend_on_the_batch(trained):
    assert inference_dtype(trained, "cpu") == "fp32"


def test_runs_load_in_their_training_dtype_on_cuda():
    assert inference_dtype("bfloat16", "cuda") == "bf16"
    assert inference_dtype("float16", "cuda:0") == "fp16"
    assert inference_dtype(None, "cuda") == "auto"
