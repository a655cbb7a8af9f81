"""Stage 3, the QA pipeline: question -> constrained KB query -> acquire_knowledge -> grounded answer.

    from ktune.pipeline import KnowledgeTunedQA
    qa = KnowledgeTunedQA.from_pretrained("runs/demo")      # default KB location
    answer = qa.ask("急性中耳炎的药物治疗有哪些？")            # Answer: query, knowledge, answer + provenance

Names are imported lazily so that `ktune --help` (which reads PipelineConfig's choices) never loads torch.
"""

from ktune.pipeline.config import PipelineConfig

__all__ = ["Answer", "KnowledgeTunedQA", "PipelineConfig"]


def __getattr__(name):
    if name in ("Answer", "KnowledgeTunedQA"):
        from ktune.pipeline import qa

        return getattr(qa, name)
    raise AttributeError(f"module 'ktune.pipeline' has no attribute {name!r}")
