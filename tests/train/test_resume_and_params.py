"""Training updates every LoRA parameter; a run interrupted after a checkpoint resumes to the same final weights."""

import json

import pytest
from safetensors.torch import load_file

from ktune.train import TrainConfig, train

OLD_STATE_KEYS = ("step", "history", "evals", "tokens", "train_s")  # checkpoint state.json, every version


class Interrupt(Exception):
    pass


def tiny_config(base, data, out, **kw):
    settings = dict(base=str(base), data=str(data), out=str(out), steps=24, lr=3e-3, batch_size=4, dtype="fp32",
                    device="cpu", lora_dropout=0.1, eval_every=0, eval_samples=4, save_every=8, warmup_steps=2,
                    threads=1, answer_fraction=0.5)
    settings.update(kw)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def tiny_base(tiny_data, tmp_path_factory):
    from ktune.train.tiny import build_tiny_model, dataset_texts

    return build_tiny_model(tmp_path_factory.mktemp("base") / "tiny", dataset_texts(tiny_data))


def test_every_trainable_lora_parameter_changes_and_nothing_else_is_trainable(tiny_base, tiny_data, tmp_path):
    from ktune.train.loop import _loop
    from ktune.train.trainer import prepare_out, setup

    s = setup(tiny_config(tiny_base, tiny_data, tmp_path / "run", steps=5))
    before = {n: p.detach().clone() for n, p in s.model.named_parameters() if p.requires_grad}
    assert before and all("lora_" in n for n in before)
    _loop(s, prepare_out(s), (), progress=False)
    unchanged = [n for n, p in s.model.named_parameters() if p.requires_grad and p.detach().equal(before[n])]
    assert unchanged == []


def test_resume_after_interruption_reaches_the_same_adapter_as_an_uninterrupted_run(tiny_base, tiny_data, tmp_path):
    full = tiny_config(tiny_base, tiny_data, tmp_path / "full")
    train(full, progress=False)

    def crash_at_13(step, state):
        if step == 13:
            raise Interrupt()

    broken = tiny_config(tiny_base, tiny_data, tmp_path / "broken")
    with pytest.raises(Interrupt):
        train(broken, callbacks=[crash_at_13], progress=False)
    assert (tmp_path / "broken" / "checkpoints" / "latest").read_text().strip() == "step-000008"
    state_file = tmp_path / "broken" / "checkpoints" / "step-000008" / "state.json"
    written = json.loads(state_file.read_text(encoding="utf-8"))
    assert tuple(written)[:5] == OLD_STATE_KEYS  # LoopState writes the layout older versions wrote and read
    assert written["data_version"] == json.loads((tiny_data / "manifest.json").read_text())["data_version"]
    # a checkpoint written before LoopState: the old save_checkpoint's json.dumps({"step": step, **state})
    old_state = {"history": written["history"], "evals": [], "tokens": written["tokens"], "train_s": 1.5}
    state_file.write_text(json.dumps({"step": 8, **old_state}, ensure_ascii=False), encoding="utf-8")
    info = train(tiny_config(tiny_base, tiny_data, tmp_path / "broken", resume=True), progress=False)

    a = load_file(str(tmp_path / "full" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "broken" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a)
    assert info.metrics["steps_done"] == 24 and len(info.metrics["loss_history"]) == 24


def test_loop_state_reads_old_and_newer_checkpoint_states(caplog):
    from ktune.errors import ConfigError
    from ktune.train.checkpoint import LoopState

    state = LoopState(step=3, history=[[1, 2.5, 0.001]], tokens=40, train_s=2.0)
    assert LoopState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert tuple(state.to_json()) == (*OLD_STATE_KEYS, "data_version")  # stopped_early never reaches a checkpoint
    assert LoopState.from_json({"step": 5, "history": [], "evals": [], "tokens": 9}) == LoopState(step=5, tokens=9)
    assert LoopState.from_json({"step": 2, "shards": 4}, origin="ckpt/state.json") == LoopState(step=2)
    assert "ckpt/state.json" in caplog.text and "shards" in caplog.text
    with pytest.raises(ConfigError, match="no step"):
        LoopState.from_json({"history": []})


def test_fresh_run_into_an_old_run_folder_discards_its_checkpoints(tiny_base, tiny_data, tmp_path):
    train(tiny_config(tiny_base, tiny_data, tmp_path / "run", steps=9), progress=False)
    assert (tmp_path / "run" / "checkpoints" / "step-000008").is_dir()
    train(tiny_config(tiny_base, tiny_data, tmp_path / "run", steps=4), progress=False)
    assert not (tmp_path / "run" / "checkpoints" / "step-000008").exists()


def test_a_checkpoint_does_not_resume_on_another_dataset(tiny_base, tiny_data, tmp_path):
    import shutil

    from ktune.errors import ConfigError
    from ktune.train.checkpoint import checkpoint_data_version

    def crash_at_9(step, state):
        if step == 9:
            raise Interrupt()

    with pytest.raises(Interrupt):
        train(tiny_config(tiny_base, tiny_data, tmp_path / "run", steps=16), callbacks=[crash_at_9], progress=False)
    other = tmp_path / "other_data"
    shutil.copytree(tiny_data, other)
    manifest = json.loads((other / "manifest.json").read_text(encoding="utf-8"))
    assert checkpoint_data_version(tmp_path / "run") == manifest["data_version"]
    manifest["data_version"] = "an-edited-dataset"
    (other / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ConfigError, match="an-edited-dataset"):
        train(tiny_config(tiny_base, other, tmp_path / "run", steps=16, resume=True), progress=False)
    (tmp_path / "run" / "checkpoints" / "step-000008" / "state.json").write_text("{not json", encoding="utf-8")
    assert checkpoint_data_version(tmp_path / "run") == ""  # unreadable: unknown, never a crash


@pytest.mark.parametrize(("warmup", "total"), [(10, 100), (0, 5), (3, 3), (2, 24)])
def test_lr_schedule_warms_up_linearly_then_decays_to_ten_percent_and_resumes_from_its_state(warmup, total):
    import math

    import torch

    from ktune.train.trainer import lr_schedule

    def expected(k):  # step k (from 0): never 0 in the warmup, cosine from 1 to 0.1 after it
        if k < warmup:
            return (k + 1) / (warmup + 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (k - warmup) / max(1, total - warmup)))

    def optimizer():
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.5)

    opt = optimizer()
    sched = lr_schedule(opt, warmup, total)
    lrs, state = [], None
    for k in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        if k == total // 2:
            state = sched.state_dict()
    assert lrs == pytest.approx([0.5 * expected(k) for k in range(total)], rel=1e-12)
    resumed_opt = optimizer()
    resumed = lr_schedule(resumed_opt, warmup, total)
    resumed.load_state_dict(state)
    assert resumed.get_last_lr()[0] == pytest.approx(lrs[total // 2 + 1])  # the next step trains at its LR
