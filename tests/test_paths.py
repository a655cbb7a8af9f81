"""$KTUNE_KB is resolved in one place (ktune.paths.default_kb) for the KB, training and the help texts."""

from pathlib import Path

from ktune.paths import default_kb, home
from tests.conftest import FIXTURES


def test_default_kb_is_ktune_kb_a_url_kept_as_written_or_the_home_kb(monkeypatch):
    assert default_kb() == home() / "kb" / "cmekg.sqlite"
    monkeypatch.setenv("KTUNE_KB", "~/kbs/my.sqlite")
    assert default_kb() == Path.home() / "kbs" / "my.sqlite"
    monkeypatch.setenv("KTUNE_KB", "postgresql://me@localhost:5432/kb")
    assert default_kb() == "postgresql://me@localhost:5432/kb"


def test_the_kb_and_training_open_the_kb_ktune_kb_names(tmp_path, monkeypatch):
    from ktune.kb import KnowledgeBase
    from ktune.prompt import PromptFormat
    from ktune.train.config import TrainConfig
    from ktune.train.tiny import build_char_tokenizer, char_vocab
    from ktune.train.trainer import query_head_ids

    path = tmp_path / "mine.sqlite"
    with KnowledgeBase.open(path, create=True) as kb:
        kb.import_file(FIXTURES / "mini_kb.jsonl")
        version = kb.version
    monkeypatch.setenv("KTUNE_KB", str(path))
    with KnowledgeBase.open() as kb:
        assert kb.version == version
        names = list(kb.entities())
    config = TrainConfig(base="b", data="d", out="o")
    tok = build_char_tokenizer(char_vocab(names))
    _, info = query_head_ids(config, {"kb_version": version}, tok, PromptFormat(), [])
    assert info["mode"] == "kb" and info["kb"] == str(path)
