"""ktune: knowledge-tuning of LLMs on structured medical knowledge bases.

Stages, one subpackage each: kb (knowledge base) -> data (dataset) -> train (LoRA knowledge-tuning)
-> pipeline (question -> query -> knowledge -> answer) -> eval (metrics, baselines) -> serve (HTTP).
"""

__version__ = "0.1.0"
