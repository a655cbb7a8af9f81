"""Systems under evaluation: one narrow interface (questions -> KB queries) and the model adapters."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from ktune.errors import ConfigError, InputError, UnknownAttributeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """What a system did with one question: its query, the entry it fetched and whether it refused."""

    entity: str | None  # the query's entity as produced (before linking)
    attribute: str | None
    linked_entity: str | None = None  # the KB entity actually looked up
    knowledge: dict = field(default_factory=dict)
    refused: bool = False
    answer: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class System(Protocol):
    name: str

    def predict(self, questions: list[str]) -> list[Prediction]: ...


def lookup(kb, entity: str | None, attribute: str | None, **extra) -> Prediction:
    """Fetch the KB entry for a baseline's (entity, attribute), with the same intent fallback as the pipeline's
    stage 2 (so systems differ only in the query they produce); no query or nothing found -> refusal."""
    if entity is None or attribute is None:
        return Prediction(entity, attribute, None, {}, True, extra=extra)
    try:
        know = kb.acquire_knowledge(entity, attribute, fallback=True) if kb.has_entity(entity) else {}
    except UnknownAttributeError:
        know = {}
    return Prediction(entity, attribute, entity if kb.has_entity(entity) else None, know, not know, extra=extra)


def prediction_from_json(obj: dict) -> Prediction:
    """A `ktune predict` line (Answer.to_json()) or an Answer-like object -> Prediction."""
    query = obj.get("query") or {}
    if isinstance(query, (list, tuple)):
        query = {"entity": query[0], "attribute": query[1]} if len(query) == 2 else {}
    know = obj.get("knowledge") or {}
    refused = obj.get("refused")
    return Prediction(
        entity=query.get("entity"),
        attribute=query.get("attribute"),
        linked_entity=obj.get("linked_entity"),
        knowledge=know,
        refused=bool(refused) if refused is not None else not know,
        answer=obj.get("answer") or "",
        extra={k: obj[k] for k in ("link_score", "link_method", "refusal_reason", "raw_answer", "dropped_claims",
                                    "premise", "sentences") if obj.get(k) is not None},
    )


def prediction_from_answer(ans) -> Prediction:
    """A pipeline `Answer` object -> Prediction (through its to_json, the same fields `predict` writes)."""
    if hasattr(ans, "to_json"):
        return prediction_from_json(ans.to_json())
    return prediction_from_json(dict(ans))


class PredictionsFile:
    """Scores a `ktune predict` JSONL file instead of running a model; rows are matched by question text."""

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        self.name = name or f"predictions:{self.path.stem}"
        self.note = f"scored from the `ktune predict` file {self.path}"
        if not self.path.is_file():
            raise InputError(f"no predictions file {self.path}; write one with `ktune predict --run RUN IN.jsonl`")
        self.rows: dict[str, dict] = {}
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(f"{self.path}:{n}: not a JSON line ({exc.msg})") from exc
                    self.rows[obj.get("question", "")] = obj

    def covers_any(self, questions: list[str]) -> bool:
        """False when the file predicts none of these questions (a split it was not run on: skipped)."""
        return any(q in self.rows for q in questions)

    def predict(self, questions: list[str]) -> list[Prediction]:
        missing = [q for q in questions if q not in self.rows]
        if missing:
            raise InputError(
                f"{self.path} has no prediction for {len(missing)} question(s), e.g. {missing[0]!r}; "
                "predict the same test file you evaluate"
            )
        return [prediction_from_json(self.rows[q]) for q in questions]


class PipelineSystem:
    """The knowledge-tuned model through `ktune.pipeline.KnowledgeTunedQA`; `query_mode` "free" = no constraints.
    `backend`: what generates queries and answers (ktune.pipeline.backend; None: the run's model here);
    `quantize`: PipelineConfig.quantize ("int8": the answer stage's decode steps)."""

    def __init__(self, run_dir, kb, query_mode: str | None = None, with_answer: bool = False, name: str | None = None,
                 backend=None, quantize: str = "none"):
        self.run_dir, self.kb, self.query_mode, self.with_answer = Path(run_dir), kb, query_mode, with_answer
        self.backend, self.quantize = backend, quantize
        self.name = name or system_label(query_mode, backend)
        where = f", backend {backend.describe()}" if backend is not None else ""
        where += f", quantize {quantize}" if quantize != "none" else ""
        self.note = f"ktune.pipeline.KnowledgeTunedQA, query mode {query_mode or 'default'}, run {self.run_dir}{where}"
        self._qa = None

    def _load(self):
        if self._qa is None:
            try:
                from ktune.pipeline import KnowledgeTunedQA
            except ImportError as exc:
                raise ConfigError(
                    "the pipeline stage (ktune.pipeline) is not installed; score a `--predictions` file instead"
                ) from exc
            self._qa = _from_pretrained(KnowledgeTunedQA, self.run_dir, self.kb, self.query_mode, self.backend,
                                        self.quantize)
        return self._qa

    def predict(self, questions: list[str]) -> list[Prediction]:
        qa = self._load()
        return [prediction_from_answer(a) for a in qa.ask_batch(list(questions), with_answer=self.with_answer)]


def system_label(query_mode: str | None, backend=None) -> str:
    """"knowledge-tuned", "knowledge-tuned (free decoding)", "knowledge-tuned (openai: MODEL)", ..."""
    parts = ["free decoding"] if query_mode == "free" else []
    if backend is not None:
        parts.append(f"{backend.name}: {backend.describe().get('model', '?')}")
    return "knowledge-tuned" + (f" ({', '.join(parts)})" if parts else "")


def _from_pretrained(cls, run_dir, kb, query_mode: str | None, backend=None, quantize: str = "none"):
    """Build the pipeline with the requested query mode and quantization through its `config=PipelineConfig(...)`
    hook."""
    settings = {k: v for k, v in (("query_mode", query_mode), ("quantize", quantize)) if v not in (None, "none")}
    if not settings:
        return cls.from_pretrained(run_dir, kb=kb, backend=backend)
    from ktune.pipeline.config import PipelineConfig

    return cls.from_pretrained(run_dir, kb=kb, config=PipelineConfig(**settings), backend=backend)
