"""Questions that ask two things ("过敏性鼻炎有什么症状，怎么治？"): every part the KB can answer is looked up.

Stage 1 writes one query for the whole question, and a small model picks one of the parts, often the last.
Here each clause that is itself a question (it has a question word: 什么, 怎么, 哪, 吗, ...) gets the attribute
the model writes for it after the query's entity (`QueryStage.free_attributes`, the entity placed as tokens, so
the model only reads the clause's intent); the attributes that differ from the query's own are kept as
`Query.also` and stage 2 gathers their facts too. A clause of patient context ("我妈妈有高血压好几年了",
"前几天被猫抓伤了") is no question and adds nothing. The entity never changes, and the knowledge of each part
is that entity's own facts under the part's attribute, so the answer still cites only the KB; when the
question's first attribute has nothing, another part that the KB can answer is answered instead of a refusal.
"""

from __future__ import annotations

import re
from dataclasses import replace

CLAUSE_SPLIT = re.compile(r"[，,。？?！!；;\s]+")
# A clause that asks: a question word, or 吗 / 呢 at its end. 几 only before a counter (好几年 is context).
QUESTION_WORD = re.compile(r"什么|怎么|怎样|咋|哪|多少|多久|多大|(?<![前好这])几[个种片粒次天岁颗周年月]|如何|是否|能不能|可不可以"
                           r"|要不要|会不会|有没有|是不是|为何|为什么|[吗呢么]$")
MAX_PARTS = 3  # a long post with many questions: the first three asked parts


def question_parts(question: str) -> list[str]:
    """The clauses of `question` that are questions themselves; [] unless there are at least two."""
    parts = [p for p in CLAUSE_SPLIT.split(question) if len(p) >= 2 and QUESTION_WORD.search(p)]
    return parts[:MAX_PARTS] if len(parts) >= 2 else []


def is_fragment(question: str) -> bool:
    """A search-box fragment ("哮喘 并发症", "宝宝用量"): no question word, no question mark."""
    return not QUESTION_WORD.search(question.strip()) and not any(ch in question for ch in "？?")


def asked_parts(stage, questions: list[str], queries: list) -> list:
    """`queries` with `also` set to the further attributes of multi-part questions (see the module doc)."""
    todo = [(i, part) for i, q in enumerate(queries) if q.linked_entity is not None and q.attribute is not None
            for part in question_parts(questions[i])]
    if not todo:
        return queries
    attrs = stage.free_attributes([part for _, part in todo], [queries[i].linked_entity for i, _ in todo])
    also: dict[int, list[str]] = {}
    for (i, _), (attr, _) in zip(todo, attrs, strict=True):
        if attr is not None and attr != queries[i].attribute and attr not in also.setdefault(i, []):
            also[i].append(attr)
    return [replace(q, also=tuple(also[i])) if also.get(i) else q for i, q in enumerate(queries)]
