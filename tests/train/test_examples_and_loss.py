"""Training examples put loss on target tokens only, tokenised in pieces; the target-only loss equals the full one."""

import pytest

from ktune.data.dataset import Dataset
from ktune.prompt import PromptFormat, encode_pieces
from ktune.train.data import IGNORE, build_examples, collate, epoch_batches
from ktune.train.loading import load_tokenizer


@pytest.fixture(scope="module")
def tiny_base(tiny_data, tmp_path_factory):
    from ktune.train.tiny import build_tiny_model, dataset_texts

    return build_tiny_model(tmp_path_factory.mktemp("base") / "tiny", dataset_texts(tiny_data))


def test_prompt_tokens_carry_no_loss_and_target_tokens_carry_their_own_ids(tiny_data, tiny_base):
    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    rec = Dataset.load(tiny_data).records()[0]
    (query, answer), _ = build_examples([rec], tok, fmt)
    n_prompt = len(fmt.encode_prompt(tok, fmt.query_prompt(rec.question)))
    assert query.input_ids[0] == tok.bos_token_id
    assert query.labels[:n_prompt] == [IGNORE] * n_prompt
    assert query.labels[n_prompt:] == query.input_ids[n_prompt:]
    assert query.input_ids[-1] == tok.eos_token_id
    assert tok.decode(query.labels[n_prompt:-1]) == f"{rec.entity}|{rec.attribute}\n"
    assert answer.step == "answer" and "相关知识" not in tok.decode([t for t in answer.labels if t != IGNORE])


def test_no_knowledge_record_targets_the_no_query_string_and_gets_no_answer_step(tiny_data, tiny_base):
    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    rec = [r for r in Dataset.load(tiny_data).records() if r.kind == "no_knowledge"][0]
    examples, counts = build_examples([rec], tok, fmt)
    assert [e.step for e in examples] == ["query"]
    assert tok.decode([t for t in examples[0].labels if t != IGNORE][:-1]) == "无\n"


def test_target_is_tokenised_piece_by_piece(tiny_base):
    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    pieces = fmt.query_target_pieces("高血压", "就诊科室")
    assert "".join(pieces) == fmt.query_target("高血压", "就诊科室")
    assert encode_pieces(tok, pieces) == [i for p in pieces for i in tok(p, add_special_tokens=False)["input_ids"]]


def test_instruction_method_trains_question_to_answer_without_knowledge(tiny_data, tiny_base):
    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    rec = Dataset.load(tiny_data).records()[0]
    (ex,), _ = build_examples([rec], tok, fmt, method="instruction")
    assert ex.step == "instruction"
    assert tok.decode(ex.input_ids).startswith("<bos>" + fmt.instruction_prompt(rec.question))
    assert "知识" not in tok.decode(ex.input_ids)


def test_target_only_loss_equals_the_full_logits_loss(tiny_data, tiny_base):
    import torch
    from transformers import AutoModelForCausalLM

    from ktune.train.loss import TargetLoss, full_logits_loss

    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    examples, _ = build_examples(Dataset.load(tiny_data).records()[:6], tok, fmt)
    batch = collate(examples, tok.pad_token_id, {})
    batch.pop("n_tokens")
    loss_sum, weight_sum, n = TargetLoss(model)(**batch)
    reference = full_logits_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert int(n) == sum(1 for e in examples for t in e.labels[1:] if t != IGNORE)
    assert float(loss_sum / weight_sum) == pytest.approx(float(reference), rel=1e-5)


def test_loss_weights_scale_each_step_kind(tiny_data, tiny_base):
    import torch
    from transformers import AutoModelForCausalLM

    from ktune.train.loss import TargetLoss

    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    examples, _ = build_examples(Dataset.load(tiny_data).records()[:4], tok, fmt)
    loss = TargetLoss(model)
    only_query = loss(**_tensors(collate(examples, tok.pad_token_id, {"query": 1.0, "answer": 0.0})))
    query_examples = [e for e in examples if e.step == "query"]
    reference = loss(**_tensors(collate(query_examples, tok.pad_token_id, {})))
    assert float(only_query[0]) == pytest.approx(float(reference[0]), rel=1e-5)


def _tensors(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "n_tokens"}


def test_packed_rows_give_the_same_loss_as_one_example_per_row(tiny_data, tiny_base):
    import torch
    from transformers import AutoModelForCausalLM

    from ktune.train.loss import TargetLoss

    tok, fmt = load_tokenizer(tiny_base), PromptFormat()
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    examples, _ = build_examples(Dataset.load(tiny_data).records()[:10], tok, fmt)
    plain = collate(examples, tok.pad_token_id, {"answer": 0.5})
    packed = collate(examples, tok.pad_token_id, {"answer": 0.5}, pack=True)
    assert packed["input_ids"].shape[0] < plain["input_ids"].shape[0]
    assert packed["n_tokens"] == plain["n_tokens"] == sum(len(e.input_ids) for e in examples)
    a, b = TargetLoss(model)(**_tensors(plain)), TargetLoss(model)(**_tensors(packed))
    assert float(a[0]) == pytest.approx(float(b[0]), rel=1e-4)
    assert float(a[1]) == float(b[1])


def test_length_grouped_epochs_cover_every_example_once_and_depend_only_on_seed_and_epoch():
    lengths = [(i * 37) % 101 for i in range(203)]
    for mode in ("group", "pack", "random"):
        batches = epoch_batches(lengths, 8, seed=3, epoch=1, mode=mode)
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert batches == epoch_batches(lengths, 8, seed=3, epoch=1, mode=mode)
        assert batches != epoch_batches(lengths, 8, seed=3, epoch=2, mode=mode)
    grouped = epoch_batches(lengths, 8, seed=3, epoch=1, mode="group")
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in grouped)
    plain = epoch_batches(lengths, 8, seed=3, epoch=1, mode="random")
    assert padding < sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in plain) / 5
