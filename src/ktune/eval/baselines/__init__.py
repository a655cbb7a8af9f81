"""Baseline retrievers that map a question to a KB entry without the knowledge-tuned model."""

from ktune.eval.baselines.bm25 import BM25Retriever
from ktune.eval.baselines.dense import DenseRetriever
from ktune.eval.baselines.rules import RuleSystem

__all__ = ["BM25Retriever", "DenseRetriever", "RuleSystem"]
