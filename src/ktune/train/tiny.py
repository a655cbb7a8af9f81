"""A tiny random Qwen2 causal LM with a character-level tokenizer: the stand-in model for fast tests."""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Iterable
from pathlib import Path

from ktune.prompt import PromptFormat

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]
TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def char_vocab(texts: Iterable[str]) -> dict[str, int]:
    """Special tokens, then every character of the texts, the default prompt format and printable ASCII."""
    fmt = PromptFormat()
    chars = set(string.printable)
    for text in (fmt.query_template, fmt.answer_template, fmt.instruction_template, fmt.separator, fmt.no_query):
        chars.update(text)
    for text in texts:
        chars.update(text)
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(chars):
        vocab.setdefault(ch, len(vocab))
    return vocab


def build_char_tokenizer(vocab: dict[str, int]):
    """A PreTrainedTokenizerFast that maps each character to one token and decodes by concatenation."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )


def save_tokenizer(tokenizer, directory: Path) -> None:
    """Save and pin tokenizer_class so AutoTokenizer never swaps in the model type's own tokenizer class."""
    tokenizer.save_pretrained(directory)
    cfg_path = Path(directory) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = TOKENIZER_CLASS
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")


def build_tiny_model(out_dir: str | Path, texts: Iterable[str], *, seed: int = 0, hidden: int = 64, layers: int = 2,
                     init_range: float = 0.3, chat_template: str | None = None) -> Path:
    """Write a random Qwen2ForCausalLM (hidden 64, 2 layers) + char tokenizer covering `texts` to out_dir.

    Load it back with `ktune.train.loading.load_base(out_dir)` (or PreTrainedTokenizerFast + AutoModelForCausalLM):
    the tokenizer pins its class because a WordLevel tokenizer next to a qwen2 config.json would otherwise
    reload as Qwen2Tokenizer and encode everything to [].
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_char_tokenizer(char_vocab(texts))
    if chat_template:
        tokenizer.chat_template = chat_template
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=init_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    log.info("tiny model: %d parameters, vocab %d -> %s", model.num_parameters(), len(tokenizer), out)
    return out


def dataset_texts(data_dir: str | Path) -> list[str]:
    """Every text of a dataset folder's jsonl files (questions, names, answers, knowledge JSON)."""
    texts = []
    for path in sorted(Path(data_dir).rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                texts.append(json.dumps(rec, ensure_ascii=False))
                texts.extend(str(v) for v in rec.values() if isinstance(v, str))
    return texts


def build_tiny_run(data_dir: str | Path, run_dir: str | Path, *, steps: int = 300, seed: int = 0,
                   chat_template: str | None = None, **overrides):
    """A tiny model trained on a dataset folder in seconds: builds the base under run_dir/../tiny-base, returns RunInfo.

    For tests of later stages (pipeline, eval, serve): the run loads with ktune.train.load_run like a real one.
    """
    from ktune.train import TrainConfig, train

    run_dir = Path(run_dir)
    base = build_tiny_model(run_dir.parent / f"{run_dir.name}-tiny-base", dataset_texts(data_dir), seed=seed,
                            chat_template=chat_template)
    settings = dict(base=str(base), data=str(data_dir), out=str(run_dir), steps=steps, lr=3e-3, batch_size=8,
                    dtype="fp32", device="cpu", lora_dropout=0.0, eval_every=0, save_every=0, eval_samples=16,
                    warmup_steps=10, seed=seed, threads=1)
    settings.update(overrides)
    return train(TrainConfig(**settings), progress=False)
