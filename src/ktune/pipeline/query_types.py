"""The stage-1 query (ktune.pipeline.query) and how sure the link of its entity to a KB key is."""

from __future__ import annotations

from dataclasses import dataclass

# Link methods that mean "the generated string IS a KB key or one of its aliases" (no guessing), or names one by
# a linker rule (variant: 手足口 -> 手足口病; modifier: 轻度脂肪肝 -> 脂肪肝; see ktune.kb.linker).
SURE_LINKS = ("exact", "normalized", "generic", "normalized_alias", "variant", "modifier", "homophone")
RULE_LINKS = ("variant", "modifier", "homophone")
OTHER_KIND = "generic_other_kind"  # a generic drug name asked a field drugs never have: refused (see resolve_free)
# Links the re-rank accepts as evidence for a constrained candidate: sure ones and homophone typos (过民性紫癜 ->
# 过敏性紫癜). A fuzzy link is not evidence: on the demo run every fuzzy-only free output was a term the KB lacks
# (乳腺结节 -> 乳腺结核 0.725, 肝脾大 -> 脾大 0.70), and forcing a KB key on those answered the wrong question.
EVIDENCE_LINKS = SURE_LINKS + ("pinyin",)
NAMED_KINDS = ("disease", "drug", "herb", "formula")


@dataclass(frozen=True)
class Query:
    entity: str | None  # the entity string the model generated (a KB name, an alias or free text)
    attribute: str | None  # canonical schema attribute, or None
    linked_entity: str | None  # the canonical KB key stage 2 looks up
    link_score: float | None = None
    link_method: str | None = None
    raw: str = ""  # the generated query line
    also: tuple[str, ...] = ()  # further attributes a multi-part question asks (ktune.pipeline.parts)
    outside: str | None = None  # what the question asks that no KB field records (费用; ktune.pipeline.outside)


def is_sure(link_method: str | None) -> bool:
    return bool(link_method) and (link_method in SURE_LINKS or link_method.startswith("alias:"))


def is_evidence(link_method: str | None) -> bool:
    return is_sure(link_method) or link_method in EVIDENCE_LINKS
