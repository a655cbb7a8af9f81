"""Stage 1: question -> KB query (canonical entity + attribute), free, constrained or both (see config)."""

from __future__ import annotations

import logging
from dataclasses import replace

from rapidfuzz import process as fuzz_process

from ktune.kb.linker import Link, normalize
from ktune.pipeline.config import PipelineConfig
from ktune.pipeline.decode import Beam, Decoder
from ktune.pipeline.mentions import MentionRules
from ktune.pipeline.outside import outside_field
from ktune.pipeline.parts import asked_parts, is_fragment
from ktune.pipeline.query_types import OTHER_KIND, RULE_LINKS, Query, is_evidence, is_sure
from ktune.pipeline.stated import stated_attribute
from ktune.pipeline.trie import QueryGrammar
from ktune.query_vocab import SubsetHead, output_embeddings_owner, query_token_ids

log = logging.getLogger(__name__)

# Re-rank weights: beam log-prob + agreement with the free output's linked entities + the surface
# appearing in the question + agreement with the free attribute.
W_LINK, W_MENTION, W_ATTR = 1.0, 0.5, 0.5


class QueryStage(MentionRules):
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
        if self.config.stated_attribute:
            queries = [self.stated(q, query) for q, query in zip(questions, queries, strict=True)]
        if self.config.entry_rules:
            queries = [self.answering_entry(q, query) for q, query in zip(questions, queries, strict=True)]
        if self.config.multi_part:
            queries = asked_parts(self, questions, queries)
        if self.config.outside_fields:
            queries = [replace(query, outside=field) if (field := outside_field(q)) else query
                       for q, query in zip(questions, queries, strict=True)]
        return queries

    def stated(self, question: str, query: Query) -> Query:
        """The attribute a search-box fragment names in the KB's words ("哮喘 并发症"), over a model attribute of
        another intent. Sentences are left to the model: their context names fields too (这几天症状反复, 不治疗会
        引起什么病), which a word match cannot tell from the field asked."""
        if query.linked_entity is None or query.attribute is None or not is_fragment(question):
            return query
        kind = self.kb.kind(query.linked_entity) or "other"
        attr = stated_attribute(question, (query.entity, query.linked_entity), kind, query.attribute, self.kb.schema)
        return query if attr is None else replace(query, attribute=attr)

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
        named an entity the linker cannot find, or finds only by a fuzzy guess or by sound (舌炎 -> 哑门), and no
        candidate agrees with it (a sure or homophone link) or appears in the question, the free query is kept
        without a KB entity (stage 2 then refuses: entity not in the KB).
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
        if best is None or (free.entity and not is_sure(free.link_method) and not best_agrees):
            return free if free.linked_entity is None else Query(free.entity, free.attribute, None, raw=free.raw)
        return best
