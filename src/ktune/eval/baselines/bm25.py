"""BM25 over KB entries (bm25s): the question retrieves the best (entity, attribute) document."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from ktune.errors import ConfigError
from ktune.eval.baselines.entries import kb_entries
from ktune.eval.baselines.rules import ATTRIBUTE_CUES
from ktune.eval.systems import Prediction, lookup
from ktune.paths import cache_dir

log = logging.getLogger(__name__)
TOKENIZERS = ("word", "char")
_DROP = re.compile(r"[\s\W_]+", re.UNICODE)


def tokenize(text: str, mode: str) -> list[str]:
    """`word`: jieba words; `char`: single characters (both lower-cased, punctuation dropped)."""
    from ktune.kb.linker import normalize

    text = normalize(text)
    if mode == "char":
        return [c for c in text if not _DROP.fullmatch(c)]
    if mode == "word":
        import jieba

        return [w for w in jieba.lcut(text) if not _DROP.fullmatch(w)]
    raise ConfigError(f"BM25 tokenizer must be one of {TOKENIZERS}, got {mode!r}")


def _doc_tokens(parts, mode: str) -> list[str]:
    return [t for part in parts for t in tokenize(part, mode)] or ["∅"]


def _quiet_jieba() -> None:
    import jieba

    jieba.setLogLevel(logging.WARNING)


class BM25Retriever:
    """One BM25 document per KB entry; the top-1 document is the query.

    A document holds the entity name, up to 8 aliases, the attribute name, its values and (with `cues`,
    the default) the attribute's intent keywords from the rule system, so that a question's intent words
    (吃什么药, 副作用) can match an entry at all: without them BM25 matches intent only through values.
    """

    def __init__(self, kb, tokenizer: str = "word", min_score: float = 0.0, progress: bool = False, cues: bool = True,
                 cache: str | Path | None = None):
        if tokenizer not in TOKENIZERS:
            raise ConfigError(f"BM25 tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
        self.kb, self.tokenizer, self.min_score, self.progress = kb, tokenizer, min_score, progress
        self.cues = ATTRIBUTE_CUES if cues else {}
        self.cache = Path(cache) if cache else cache_dir() / "bm25"
        self.name = f"BM25 ({tokenizer})"
        self.note = (f"bm25s over one document per (entity, attribute) KB entry: name, aliases, attribute name, "
                     f"values{', intent keywords' if cues else ''}; {tokenizer} tokens; top-1 document is the query")
        self._index = None
        self._entries = None

    def cache_key(self, n_entries: int) -> str:
        blob = json.dumps([self.kb.version, self.tokenizer, self.cues, n_entries], ensure_ascii=False, sort_keys=True)
        return f"{self.tokenizer}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def _build(self):
        import bm25s

        entries = kb_entries(self.kb)
        path = self.cache / self.cache_key(len(entries))
        if (path / "params.index.json").is_file():
            log.info("BM25 (%s): loading the cached index %s", self.tokenizer, path)
            self._index, self._entries = bm25s.BM25.load(str(path), show_progress=False), entries
            return
        if self.tokenizer == "word":
            _quiet_jieba()
        log.info("BM25 (%s): indexing %d KB entries (cached afterwards at %s)", self.tokenizer, len(entries), path)
        docs = _progress(entries, self.progress, self.tokenizer == "word")
        corpus = [_doc_tokens(e.parts() + self.cues.get(e.attribute, ()), self.tokenizer) for e in docs]
        index = bm25s.BM25()
        index.index(corpus, show_progress=False)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        index.save(str(tmp), show_progress=False)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        self._index, self._entries = index, entries

    def predict(self, questions: list[str]) -> list[Prediction]:
        if self._index is None:
            self._build()
        if not self._entries:
            return [lookup(self.kb, None, None) for _ in questions]
        tokens = [tokenize(q, self.tokenizer) or ["∅"] for q in questions]
        docs, scores = self._index.retrieve(tokens, k=1, show_progress=False)
        out = []
        for row, score in zip(docs, scores, strict=True):
            s = float(score[0])
            if s <= self.min_score:
                out.append(lookup(self.kb, None, None, score=s))
                continue
            e = self._entries[int(row[0])]
            out.append(lookup(self.kb, e.entity, e.attribute, score=round(s, 4)))
        return out


def _progress(items, show: bool, word: bool):
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="BM25 tokenize" + (" (jieba)" if word else ""), unit="doc")
