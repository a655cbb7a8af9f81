"""Stage 1's reading of the question itself: the KB names it writes, after the model has written its query.

`MentionRules` is a part of `QueryStage` (ktune.pipeline.query), which applies each rule the pipeline config
turns on: the longest KB mention (extend_to_mention), a name the question writes as a word of its own when the
model wrote no query (named_entity_fallback) or a framed one (framed_mention), and the KB entry that answers
the resolved query (answering_entry). The stage provides `kb`, `config`, `free_attributes`, `_pick_link` and
`_kind_attributes`.
"""

from __future__ import annotations

from ktune.errors import UnknownAttributeError
from ktune.kb.aliases import DERIVED
from ktune.kb.linker import normalize
from ktune.kb.variants import frame_only
from ktune.pipeline.query_types import NAMED_KINDS, OTHER_KIND, RULE_LINKS, Query, is_sure

POPULATION_WINDOW = 6  # characters before a name searched for a population word (一岁宝宝 + 拉肚子)
# A mention stands alone unless a longer word holds it (上腹痛) or a single character glued to it makes a longer term
# (上 + 腹痛): single characters that only frame a name (我妈有|高血压, 宝宝长|针眼, 得了|痔疮, 针眼|了, 高血压|吃什么,
# 高血压|挂什么科) are fine.
# What a generated entity may carry after the name as the question's own cue for the attribute (心梗前兆 ->
# 心梗 with the model's 临床表现, 脑梗后遗症 -> 脑梗 with 并发症): the asked field, not a different condition.
_CUE_SUFFIXES = ("前兆", "后遗症", "早期症状", "早期表现", "症状", "表现")
# What else a model glues to a name in its query, besides frame words (ktune.kb.variants.frame_only): a test result
# names the condition tested for (幽门螺旋杆菌阳性), verbs and particles of the sentence (脑梗过, 孕妇可吃吗丁啉, 长疖子,
# 查幽门螺杆菌).
_GLUE_WORDS = ("阳性", "阴性")
_GLUE_CHARS = set("过了用吃喝服可能会要得患有长查")
_FRAME_CHARS = set("有得患了的是长犯为出查个种说和与或及跟吃用喝打治看做会能要该怎咋吗呢啊吧呀么好老总还又也就都很太挂")


def standalone(norm: str, start: int, end: int) -> bool:
    """norm[start:end] is a word of its own: no jieba word of the question holds it and more (上腹痛 holds 腹痛), and
    the words next to it, segmented on each side of it, glue no single content character to it. A name jieba does
    not know is still found (甲减 in 甲减要做哪些检查, where jieba cuts 甲|减要)."""
    import jieba

    if any(s <= start and end <= e and e - s > end - start for _, s, e in jieba.tokenize(norm)):
        return False
    left = list(jieba.tokenize(norm[:start])) if start > 0 else []
    right = list(jieba.tokenize(norm[end:])) if end < len(norm) else []
    neighbours = (left[-1][0] if left else None, right[0][0] if right else None)
    return not any(w is not None and len(w) == 1 and "\u4e00" <= w <= "\u9fff" and w not in _FRAME_CHARS
                   for w in neighbours)


def _framing(text: str) -> bool:
    """`text`, next to a name in a generated entity, only frames it (see _GLUE_WORDS): no content of its own."""
    for word in _GLUE_WORDS:
        text = text.replace(word, "")
    return frame_only("".join(ch for ch in text if ch not in _GLUE_CHARS))


def _named(surface: str, link) -> str:
    """What the query names: the KB key a linker rule reached from a surface that is no KB key (牙疼 -> 牙痛,
    as in QueryStage.resolve_free), else the surface the question writes."""
    return link.entity if link.method in RULE_LINKS else surface


def _subsequence(short: str, long: str) -> bool:
    """`short`'s characters appear in `long` in order (五肩 in 五十肩)."""
    it = iter(long)
    return all(ch in it for ch in short)


class MentionRules:
    """The question-mention rules of `QueryStage` (see the module doc)."""

    def answering_entry(self, question: str, query: Query) -> Query:
        """The KB entry that answers the resolved query: the population's own entry when the question puts a
        population word right before the name (一岁宝宝拉肚子 -> 小儿腹泻, if that entry has the asked intent), else
        the entry itself, or, when it has nothing for the intent, the richest equivalent entry that has (脑梗|预防 ->
        脑梗死: CMeKG keeps 脑梗 as a thin entry of its own). The entity kind never changes."""
        entity, attr = query.linked_entity, query.attribute
        norm = normalize(question)
        if entity is None and attr is not None and query.entity and query.link_method in (None, OTHER_KIND):
            # a name the KB has only as a population's entry (小孩咳嗽: 咳嗽 names drug products, 小儿咳嗽 an entry)
            surface = normalize(query.entity)
            at = norm.find(surface)
            own = self.kb.linker.population_entry(norm[max(0, at - POPULATION_WINDOW):at], surface) if at > 0 else None
            if own and self.kb.kind(own) in NAMED_KINDS and self._answers(own, attr):
                return Query(query.entity, attr, own, None, "population", query.raw)
            return query
        if entity is None or attr is None:
            return query
        kind = self.kb.kind(entity)
        for surface in (normalize(query.entity or ""), normalize(entity)):
            at = norm.find(surface) if surface else -1
            if at > 0:
                own = self.kb.linker.population_entry(norm[max(0, at - POPULATION_WINDOW):at], surface)
                if own and own != entity and self.kb.kind(own) == kind and self._answers(own, attr):
                    return self._moved(query, own, "population")
                break
        # the asked field itself first, in this entry or one that is the same (布洛芬有哪些禁忌: the product with 禁忌
        # over 布洛芬片's 注意事项), then the asked intent's other fields (ktune.kb.schema fallback), in the same order
        others = [(o, f"equivalent:{how}") for o, how in self.kb.linker.equivalents(entity) if self.kb.kind(o) == kind]
        if entity not in norm:  # the question names only the generic name: any product of it is what was asked
            others += [(o, "generic") for o in self._products_named(norm, entity)]
        for exact in (True, False):
            if self._answers(entity, attr, exact):
                return query
            for other, how in others:
                if self._answers(other, attr, exact):
                    return self._moved(query, other, how)
        return query

    def _products_named(self, norm: str, entity: str) -> list[str]:
        """The other products of a generic drug name that the question writes and `entity` is a product of
        (布洛芬一次吃几粒 with 布洛芬片: 布洛芬缓释胶囊, ...), in the linker's order (plainest name first)."""
        linker = self.kb.linker
        for _, _, surface in linker.find_mentions(norm):
            products = [e for e, pred in linker.by_alias_norm.get(surface, ()) if pred == DERIVED]
            if entity in products:
                return [lk.entity for lk in self.kb.link(surface, k=len(products)) if lk.entity != entity]
        return []

    def _answers(self, entity: str, attribute: str, exact: bool = False) -> bool:
        """`entity` has facts for `attribute` (exact: under that attribute itself, not its intent's fallbacks)."""
        try:
            fallback = self.config.attribute_fallback and not exact
            return bool(self.kb.acquire_knowledge(entity, attribute, fallback=fallback))
        except UnknownAttributeError:
            return False

    @staticmethod
    def _moved(query: Query, entity: str, how: str) -> Query:
        return Query(query.entity, query.attribute, entity, query.link_score, f"{query.link_method}+{how}", query.raw)

    def named_entity_fallback(self, questions: list[str], queries: list[Query]) -> list[Query]:
        """`无` for a question that names a KB condition or drug as a word of its own ("宝宝长针眼了怎么办"): the
        model chose no query although the question names one; the entity is then given and the model picks only
        the attribute, under the grammar (as in the oracle-entity ablation). A name glued to other content
        (上 + 腹痛, 乳腺 + 结节) is no such mention, so questions about terms the KB lacks stay refused."""
        todo = [(i, e) for i, q in enumerate(queries)
                if q.link_method == "no_query" and (e := self.named_entity(questions[i])) is not None]
        if not todo:
            return queries
        out = list(queries)
        attrs = self.free_attributes([questions[i] for i, _ in todo], [e for _, e in todo])
        for (i, surface), (attr, raw) in zip(todo, attrs, strict=True):
            if attr is None:
                continue
            links = [lk for lk in self.kb.link(surface, k=self.config.link_k) if is_sure(lk.method)]
            if links:  # a generic drug name: the product that has the attribute (二甲双胍 -> 盐酸二甲双胍片)
                best = self._pick_link(links, attr)
                out[i] = Query(_named(surface, best), attr, best.entity, best.score, f"named_entity:{best.method}", raw)
        return out

    def framed_mention(self, question: str, query: Query) -> Query:
        """A generated entity that links to nothing but is one KB name framed by numbers, sizes, sides or modifier
        words (左肾结石0.6cm -> 肾结石, 八十多，便秘 -> 便秘) or followed by a cue of the attribute asked (心梗前兆), the
        name standing alone in the question: query that name
        with the attribute the model wrote. Content next to the name (乳腺 + 结节) is no frame: still refused."""
        if query.linked_entity is not None or not query.entity or query.link_method == OTHER_KIND:
            return query
        span, norm = normalize(query.entity), normalize(question)
        hits = []
        linker = self.kb.linker
        for start, end, surface in linker.find_mentions(span) + linker.variant_mentions(span):
            if not (_framing(span[:start]) and (_framing(span[end:]) or span[end:] in _CUE_SUFFIXES)):
                continue
            # the name, or the whole framed span as generated (左 + 肾结石 + 0.6cm), is a word of its own
            if not any((at := norm.find(text)) >= 0 and standalone(norm, at, at + len(text)) for text in (surface, span)):
                continue
            links = [lk for lk in self.kb.link(surface, k=self.config.link_k)
                     if is_sure(lk.method) and self.kb.kind(lk.entity) in NAMED_KINDS]
            if links:
                hits.append((surface, self._pick_link(links, query.attribute)))
        if not hits:  # the model dropped characters of a name the question writes (五十肩 -> 五肩)
            for start, end, surface in self.mentions(question):
                if (len(span) >= 2 and 0 < len(surface) - len(span) <= 2 and _subsequence(span, surface)
                        and standalone(norm, start, end)):
                    links = [lk for lk in self.kb.link(surface, k=self.config.link_k)
                             if is_sure(lk.method) and self.kb.kind(lk.entity) in NAMED_KINDS]
                    if links:
                        hits.append((surface, self._pick_link(links, query.attribute)))
        if len(hits) != 1:
            return query
        surface, best = hits[0]
        attribute, raw = query.attribute, query.raw
        if attribute not in self._kind_attributes(best.entity):  # 心梗前兆|相关症状 (a symptom entry's field):
            attribute, raw = self.free_attributes([question], [surface])[0]  # the model's attribute after the name
        return Query(_named(surface, best), attribute, best.entity, best.score, f"framed:{best.method}", raw)

    def named_entity(self, question: str) -> str | None:
        """The KB surface (a condition, drug, herb or formula; a generic drug name included) the question names as
        a standalone word, with a population word before it kept (宝宝 + 拉肚子 -> 小儿腹泻), if exactly one."""
        found = set()
        norm = normalize(question)
        for start, end, surface in self.mentions(question):
            if not standalone(norm, start, end):
                continue
            links = [lk for lk in self.kb.link(surface, k=self.config.link_k)
                     if is_sure(lk.method) and self.kb.kind(lk.entity) in NAMED_KINDS]
            if links:
                own = self.kb.linker.population_entry(norm[max(0, start - 4):start], surface)
                found.add(own or surface)
        return found.pop() if len(found) == 1 else None

    def mentions(self, question: str) -> list[tuple[int, int, str]]:
        """KB surfaces the question writes, exactly, with a homophone typo (高血呀) or as a variant that is a word of
        the question (带状疱疹 for 带状疱疹感染, 牙疼 for 牙痛; jieba's word boundaries at both ends, so 肺炎症 of
        肺炎症状 is none), over normalize(question)."""
        import jieba

        exact = self.kb.linker.find_mentions(question)
        written = {i for s, e, _ in exact for i in range(s, e)}
        norm = normalize(question)
        bounds = {b for _, s, e in jieba.tokenize(norm) for b in (s, e)}
        variants = [m for m in self.kb.linker.variant_mentions(norm) if m[0] in bounds and m[1] in bounds]
        # a typo that covers an exact name wins (阿莫西林交囊 over 阿莫西林) unless what it adds is a frame character
        # that happens to read like the name's next one (痛风是 reads like 痛风石: 痛风 stays)
        typos = [m for m in self.kb.linker.homophone_mentions(question)
                 if not any(i not in written and norm[i] in _FRAME_CHARS for i in range(m[0], m[1]))
                 or not written & set(range(m[0], m[1]))]
        found, taken = [], set()
        for m in sorted(exact + typos + variants, key=lambda m: (m[0] - m[1], m[0])):  # longest first
            if not taken & set(range(m[0], m[1])):
                found.append(m)
                taken.update(range(m[0], m[1]))
        return sorted(found)

    def extend_to_mention(self, question: str, query: Query) -> Query:
        """The longest KB mention: when the query's entity is written in the question inside a longer KB name or
        alias (丝瓜 in "丝瓜皮药用部位", 系统性红斑狼疮 in "系统性红斑狼疮所致脊髓病..."), query the longer one.

        The question names the longer entry in full; a small model tends to stop at the shorter, more frequent
        name (or at a part of it that is no KB key: 三叉神经 of 三叉神经的面部感觉检查). The longer mention must be
        a KB name or alias, not a generic drug name that only derives a product (痔 in 痔疮 stays 痔). The
        attribute is kept even when the longer entry lacks it: stage 2 then refuses, which is right for a
        question about that entry. Measured on the demo run: 9 entity errors of 600 fixed, none made.
        """
        if query.entity is None:
            return query
        surface = normalize(query.entity)
        longer = [m for _, _, m in self.mentions(question) if surface in m and m != surface]
        if not surface or not longer:
            return query
        links = [lk for lk in self.kb.link(max(longer, key=len), k=self.config.link_k)
                 if is_sure(lk.method) and lk.method != "generic"]
        if not links:
            return query
        best = self._pick_link(links, query.attribute)
        return Query(best.entity, query.attribute, best.entity, best.score, f"longest_mention:{best.method}", query.raw)
