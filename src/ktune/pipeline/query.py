"""Stage 1: question -> KB query (canonical entity + attribute), free, constrained or both (see config)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rapidfuzz import process as fuzz_process

from ktune.errors import UnknownAttributeError
from ktune.kb.aliases import DERIVED
from ktune.kb.linker import Link, normalize
from ktune.kb.variants import frame_only
from ktune.pipeline.config import PipelineConfig
from ktune.pipeline.decode import Beam, Decoder
from ktune.pipeline.parts import asked_parts
from ktune.pipeline.trie import QueryGrammar
from ktune.query_vocab import SubsetHead, output_embeddings_owner, query_token_ids

log = logging.getLogger(__name__)

# Link methods that mean "the generated string IS a KB key or one of its aliases" (no guessing), or names one by
# a linker rule (variant: 手足口 -> 手足口病; modifier: 轻度脂肪肝 -> 脂肪肝; see ktune.kb.linker).
SURE_LINKS = ("exact", "normalized", "generic", "normalized_alias", "variant", "modifier", "homophone")
RULE_LINKS = ("variant", "modifier", "homophone")
OTHER_KIND = "generic_other_kind"  # a generic drug name asked a field drugs never have: refused (see resolve_free)
# Links the re-rank accepts as evidence for a constrained candidate: sure ones and homophone typos (过民性紫癜 ->
# 过敏性紫癜). A fuzzy link is not evidence: on the demo run every fuzzy-only free output was a term the KB lacks
# (乳腺结节 -> 乳腺结核 0.725, 肝脾大 -> 脾大 0.70), and forcing a KB key on those answered the wrong question.
EVIDENCE_LINKS = SURE_LINKS + ("pinyin",)
# Re-rank weights: beam log-prob + agreement with the free output's linked entities + the surface
# appearing in the question + agreement with the free attribute.
W_LINK, W_MENTION, W_ATTR = 1.0, 0.5, 0.5
NAMED_KINDS = ("disease", "drug", "herb", "formula")
POPULATION_WINDOW = 6  # characters before a name searched for a population word (一岁宝宝 + 拉肚子)
# A mention stands alone unless a longer word holds it (上腹痛) or a single character glued to it makes a longer term
# (上 + 腹痛): single characters that only frame a name (我妈有|高血压, 宝宝长|针眼, 得了|痔疮, 针眼|了, 高血压|吃什么,
# 高血压|挂什么科) are fine.
# What a generated entity may carry after the name as the question's own cue for the attribute (心梗前兆 ->
# 心梗 with the model's 临床表现, 脑梗后遗症 -> 脑梗 with 并发症): the asked field, not a different condition.
_CUE_SUFFIXES = ("前兆", "后遗症", "早期症状", "早期表现", "症状", "表现")
_FRAME_CHARS = set("有得患了的是长犯为出查个种说和与或及跟吃用喝打治看会能要该怎咋吗呢啊吧呀么好老总还又也就都很太挂")


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


def _subsequence(short: str, long: str) -> bool:
    """`short`'s characters appear in `long` in order (五肩 in 五十肩)."""
    it = iter(long)
    return all(ch in it for ch in short)


@dataclass(frozen=True)
class Query:
    entity: str | None  # the entity string the model generated (a KB name, an alias or free text)
    attribute: str | None  # canonical schema attribute, or None
    linked_entity: str | None  # the canonical KB key stage 2 looks up
    link_score: float | None = None
    link_method: str | None = None
    raw: str = ""  # the generated query line
    also: tuple[str, ...] = ()  # further attributes a multi-part question asks (ktune.pipeline.parts)


def is_sure(link_method: str | None) -> bool:
    return bool(link_method) and (link_method in SURE_LINKS or link_method.startswith("alias:"))


def is_evidence(link_method: str | None) -> bool:
    return is_sure(link_method) or link_method in EVIDENCE_LINKS


class QueryStage:
    """Generates and resolves queries for batches of questions."""

    def __init__(self, decoder: Decoder, kb, prompt_format, config: PipelineConfig, grammar: QueryGrammar | None = None):
        self.decoder = decoder
        self.kb = kb
        self.fmt = prompt_format
        self.config = config
        self._grammar = grammar  # a grammar given by the caller is kept whatever the KB does
        self._query_decoder: Decoder | None = None

    # The head and the grammar are derived from the KB's names: one per KB version (KnowledgeBase.derived),
    # rebuilt when a snapshot sees a new version (`ktune kb import` while serving), never changed in place.
    @property
    def head(self) -> SubsetHead | None:
        """The stage-1 subset LM head (config.query_vocab == "kb") of this KB version, built on first use."""
        if self.config.query_vocab != "kb" or output_embeddings_owner(self.decoder.model) is None:
            return None
        return self.kb.derived(self, "query_head", self._build_head)

    def _build_head(self) -> SubsetHead:
        owner, name = output_embeddings_owner(self.decoder.model)
        # the rows training used for query-step targets (ktune.query_vocab), a superset of the grammar's
        ids = query_token_ids(self.kb, self.decoder.tokenizer, self.fmt, [*self.decoder.end_ids, self.decoder.pad_id])
        return SubsetHead(getattr(owner, name), ids)

    @property
    def grammar(self) -> QueryGrammar:
        """The stage-1 grammar (every KB name and alias) of this KB version, built on first use."""
        if self._grammar is not None:
            return self._grammar
        return self.kb.derived(self, "query_grammar", lambda: QueryGrammar.from_kb(
            self.kb, self.decoder.tokenizer, self.fmt, self.config.attribute_scope))

    @property
    def query_decoder(self) -> Decoder:
        """The decoder seen through the stage-1 head (a view: the shared model is never changed)."""
        head, lookup = self.head, self.config.query_lookup
        decoder = self._query_decoder
        if decoder is None or decoder.head is not head or decoder.lookup != lookup:
            decoder = self._query_decoder = self.decoder.with_head(head, lookup=lookup)
        return decoder

    def run(self, questions: list[str], mode: str | None = None) -> list[Query]:
        return self._run(questions, mode or self.config.query_mode)

    def _run(self, questions: list[str], mode: str) -> list[Query]:
        queries = self._decode(questions, mode)
        if self.config.longest_mention:
            queries = [self.extend_to_mention(q, query) for q, query in zip(questions, queries, strict=True)]
        if self.config.mention_fallback:
            queries = self.named_entity_fallback(questions, queries)
            queries = [self.framed_mention(q, query) for q, query in zip(questions, queries, strict=True)]
        if self.config.entry_rules:
            queries = [self.answering_entry(q, query) for q, query in zip(questions, queries, strict=True)]
        if self.config.multi_part:
            queries = asked_parts(self, questions, queries)
        return queries

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
        if self._answers(entity, attr):
            return query
        for other, how in self.kb.linker.equivalents(entity):
            if self.kb.kind(other) == kind and self._answers(other, attr):
                return self._moved(query, other, f"equivalent:{how}")
        if entity not in norm:  # the question names only the generic name: any product of it is what was asked
            for other in self._products_named(norm, entity):
                if self._answers(other, attr):
                    return self._moved(query, other, "generic")
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

    def _answers(self, entity: str, attribute: str) -> bool:
        try:
            return bool(self.kb.acquire_knowledge(entity, attribute, fallback=self.config.attribute_fallback))
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
                out[i] = Query(surface, attr, best.entity, best.score, f"named_entity:{best.method}", raw)
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
        for start, end, surface in self.kb.linker.find_mentions(span):
            if not (frame_only(span[:start]) and (frame_only(span[end:]) or span[end:] in _CUE_SUFFIXES)):
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
        return Query(surface, attribute, best.entity, best.score, f"framed:{best.method}", raw)

    def free_attributes(self, questions: list[str], entities: list[str]) -> list[tuple[str | None, str]]:
        """The attribute the model writes after a given `entity|`, decoded freely: it says what the question
        asks even when the entity has no such field (then stage 2 refuses), unlike decoding under the grammar,
        which only offers the fields the entity has."""
        beams = self._attribute_beams(questions, entities)
        out = []
        for entity, beam in zip(entities, beams, strict=True):
            text = beam.text.split(self.fmt.stop, 1)[0].strip()
            out.append((self.map_attribute(text) if text else None, f"{entity}{self.fmt.separator}{text}"))
        return out

    def _attribute_beams(self, questions: list[str], entities: list[str]) -> list[Beam]:
        """Free greedy continuations after each question's query prompt + `entity|` (placed as tokens)."""
        from ktune.prompt import encode_pieces

        prompts = [self.fmt.query_prompt(q) for q in questions]
        forced = [encode_pieces(self.decoder.tokenizer, [e, self.fmt.separator]) for e in entities]
        return self.query_decoder.greedy(prompts, self.config.max_query_tokens, None, forced)

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
        """KB surfaces the question writes, exactly or with a homophone typo (高血呀), over normalize(question)."""
        exact = self.kb.linker.find_mentions(question)
        written = {i for s, e, _ in exact for i in range(s, e)}
        norm = normalize(question)
        # a typo that covers an exact name wins (阿莫西林交囊 over 阿莫西林) unless what it adds is a frame character
        # that happens to read like the name's next one (痛风是 reads like 痛风石: 痛风 stays)
        typos = [m for m in self.kb.linker.homophone_mentions(question)
                 if not any(i not in written and norm[i] in _FRAME_CHARS for i in range(m[0], m[1]))
                 or not written & set(range(m[0], m[1]))]
        found, taken = [], set()
        for m in sorted(exact + typos, key=lambda m: (m[0] - m[1], m[0])):  # longest first
            if not taken & set(range(m[0], m[1])):
                found.append(m)
                taken.update(range(m[0], m[1]))
        return sorted(found)

    def _decode(self, questions: list[str], mode: str) -> list[Query]:
        prompts = [self.fmt.query_prompt(q) for q in questions]
        n_tok = self.config.max_query_tokens
        if mode == "greedy":
            return [self._from_beam(b) for b in self.query_decoder.greedy(prompts, n_tok, self.grammar)]
        if mode == "beam":
            return [self._from_beam(bs[0])
                    for bs in self.query_decoder.beams(prompts, n_tok, self.grammar, self.config.num_beams)]
        free = [self.resolve_free(b.text) for b in self.query_decoder.greedy(prompts, n_tok)]
        if mode == "free":
            return free
        todo = list(range(len(questions))) if mode == "rerank" else [i for i, q in enumerate(free) if self._misses(q)]
        if todo:
            for i, bs in zip(todo, self._constrained([prompts[i] for i in todo]), strict=True):
                free[i] = self.rerank(questions[i], free[i], bs)
        return free

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

    def _constrained(self, prompts: list[str]) -> list[list[Beam]]:
        """Constrained candidates per prompt: all beams, or the greedy path when num_beams is 1."""
        n_tok = self.config.max_query_tokens
        if self.config.num_beams == 1:
            return [[b] for b in self.query_decoder.greedy(prompts, n_tok, self.grammar)]
        return self.query_decoder.beams(prompts, n_tok, self.grammar, self.config.num_beams)

    # --- free output -> KB key ----------------------------------------------------------------
    def resolve_free(self, text: str) -> Query:
        """Parse `entity|attribute`, map the attribute onto the schema and the entity through the linker."""
        raw = text.split(self.fmt.stop, 1)[0].strip()
        entity, attr = self.fmt.parse_query(raw)
        if entity is None:
            return Query(None, None, None, raw=raw, link_method="no_query" if raw == self.fmt.no_query else None)
        attr = self.map_attribute(attr)
        links = self.kb.link(entity, k=self.config.link_k)
        if not links:
            return Query(entity, attr, None, raw=raw)
        if links[0].method == "pinyin" and (twin := self.kb.linker.homophone_of(entity)):
            # written with a homophone typo (鼻豆炎): the one KB name that reads the same, as a rule, not a guess
            links = [Link(lk.entity, lk.score, "homophone", lk.surface) for lk in self.kb.link(twin, k=self.config.link_k)
                     if is_sure(lk.method)] or links
        best = self._pick_link(links, attr)
        if best.method in RULE_LINKS:  # the query names the KB key the rule reached; `raw` keeps what was generated
            entity = best.entity
        if best.method == "generic" and attr is not None and attr not in self._kind_attributes(best.entity):
            # 天麻|功效: a herb's field asked of a name that the KB has only as drug products (天麻片) means the
            # question is about something the KB lacks; kept as asked and refused, never re-decoded onto a product
            return Query(entity, attr, None, raw=raw, link_method=OTHER_KIND)
        return Query(entity, attr, best.entity, best.score, best.method, raw)

    def _kind_attributes(self, entity: str) -> list[str]:
        return self.kb.schema.attributes_for_kind(self.kb.kind(entity) or "other")

    def map_attribute(self, attr: str | None) -> str | None:
        names = self.kb.schema.names
        if attr is None or attr in names:
            return attr
        hit = fuzz_process.extractOne(attr, names, score_cutoff=60)
        return hit[0] if hit else None

    def _pick_link(self, links, attr):
        """Within the top score tier, the first entity that has the attribute (二甲双胍 -> the product with it)."""
        top = links[0]
        if attr is None:
            return top
        for link in links:
            if link.score < top.score - 0.05:
                break
            if attr in self.kb.attributes_of(link.entity):
                return link
        return top

    def _misses(self, q: Query) -> bool:
        """The free query needs the constrained pass: no sure KB key, no attribute, or an attribute that entities
        of this kind never have (毒性 asked of a drug: a confusion; a field of the kind that this one entity
        lacks is kept, and refused by stage 2)."""
        if (q.entity is None and q.link_method == "no_query") or q.link_method == OTHER_KIND:
            return False
        if q.attribute is None or not is_sure(q.link_method):
            return True
        return q.attribute not in self._kind_attributes(q.linked_entity)

    # --- constrained output -> KB key ---------------------------------------------------------
    def _from_beam(self, beam: Beam) -> Query:
        state = self.grammar.walk(list(beam.tokens) + self.decoder.stop_ids)
        if state.no_query or not state.complete or state.surface is None:
            return Query(None, None, None, raw=beam.text, link_method="no_query" if state.no_query else None)
        entity, score, method = self._canonical(state.surface, state.attribute)
        return Query(state.surface, state.attribute, entity, score, f"constrained:{method}", beam.text)

    def _canonical(self, surface: str, attribute: str | None) -> tuple[str, float, str]:
        """A decoded surface -> its canonical entity (an alias may stand for several: ask the linker)."""
        ents = self.grammar.entities_of(surface)
        if len(ents) == 1 and ents[0] == surface:
            return surface, 1.0, "exact"
        with_attr = [e for e in ents if attribute in self.kb.attributes_of(e)] or list(ents)
        ranked = [lk for lk in self.kb.link(surface, k=max(self.config.link_k, len(ents))) if lk.entity in with_attr]
        if ranked:
            return ranked[0].entity, ranked[0].score, ranked[0].method
        return sorted(with_attr)[0], 0.9, "alias"

    def rerank(self, question: str, free: Query, beams: list[Beam]) -> Query:
        """Best constrained candidate after adding agreement with the free output, the linker and the question.

        Guard against forcing a KB key onto a question about something the KB lacks: when the free output
        named an entity the linker cannot find, or finds only by a fuzzy guess, and no candidate agrees with it
        (a sure or homophone link) or appears in the question, the free query is kept without a KB entity
        (stage 2 then refuses: entity not in the KB).
        """
        link_scores = {}
        if free.entity:
            link_scores = {lk.entity: lk.score for lk in self.kb.link(free.entity, k=self.config.link_k)
                           if is_evidence(lk.method)}
        norm_q = normalize(question)
        best, best_score, best_agrees = None, float("-inf"), False
        for beam in beams:
            q = self._from_beam(beam)
            score, agrees = beam.score, False
            if q.linked_entity is not None:
                link, mention = link_scores.get(q.linked_entity, 0.0), normalize(q.entity) in norm_q
                agrees = link > 0 or mention
                score += W_LINK * link + W_MENTION * mention + W_ATTR * (q.attribute == free.attribute)
            if score > best_score:
                best, best_score, best_agrees = q, score, agrees
        if best is None or (free.entity and not is_evidence(free.link_method) and not best_agrees):
            return free if free.linked_entity is None else Query(free.entity, free.attribute, None, raw=free.raw)
        return best
