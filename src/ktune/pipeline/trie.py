"""The query grammar as token tries: KB entity names + aliases, then the separator, then valid attributes.

A query is `{entity}{sep}{attribute}{stop}` or `{no_query}{stop}`, tokenized piece by piece exactly as the
training code tokenizes targets (ktune.train: entity, separator, attribute and newline are encoded
separately), so the trie sees the token boundaries the model was trained on.

  entity trie     keys: tokens(surface) + tokens(sep)    -> the surface (a KB name or an alias)
                  key:  tokens(no_query) + tokens(stop)  -> NO_QUERY
  attribute trie  keys: tokens(attribute) + tokens(stop) -> the attribute, one small trie per attribute set

An alias decodes to its canonical entities (`QueryGrammar.entities_of`); the attributes allowed after it
are those valid for any of them. Nodes are dicts {token: child}; `_END` holds a key's payload.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ktune.prompt import encode_pieces, encode_texts

log = logging.getLogger(__name__)

_END = -1  # token ids are >= 0, so -1 never collides with a child
NO_QUERY = "\x00no_query"


def encode_piece(tokenizer, text: str) -> list[int]:
    """Token ids of one target piece, without special tokens (as ktune.prompt.encode_pieces encodes targets)."""
    return encode_pieces(tokenizer, [text])


def _encode_many(tokenizer, texts: list[str]) -> list[list[int]]:
    return [list(x) for x in encode_texts(tokenizer, texts)]


def _memo(fn: Callable[[str], Iterable[str]]) -> Callable[[str], tuple[str, ...]]:
    cache: dict[str, tuple[str, ...]] = {}

    def wrapped(entity: str) -> tuple[str, ...]:
        if entity not in cache:
            cache[entity] = tuple(fn(entity))
        return cache[entity]

    return wrapped


def kb_keys(kb, attribute_scope: str = "entity") -> tuple[dict[str, tuple[str, ...]], Callable[[str], list[str]]]:
    """What a stage-1 grammar allows: every KB name and alias -> its canonical entities, and the attributes allowed
    after an entity (see QueryGrammar.from_kb for `attribute_scope`).

    Everything is read now, from the caller's snapshot (one query each): a grammar built from it never reads the
    KB later, so it stays the grammar of the version it was built from."""
    kinds = dict(kb.store.iter_entities())
    surfaces: dict[str, set[str]] = defaultdict(set)
    for name in kinds:
        surfaces[name].add(name)
    for surface, entity, _pred in kb.store.iter_aliases():
        surfaces[surface].add(entity)
    frozen = {s: tuple(sorted(es)) for s, es in surfaces.items()}
    table = kb.attributes_table()

    def attributes_of(entity: str) -> list[str]:
        have = table.get(entity, [])
        if attribute_scope != "kind":
            return have
        return have + [a for a in kb.schema.attributes_for_kind(kinds.get(entity) or "other") if a not in have]

    return frozen, attributes_of


class TokenTrie:
    """Token sequences -> payloads."""

    def __init__(self):
        self.root: dict = {}
        self.size = 0

    def insert(self, tokens: Sequence[int], payload) -> None:
        node = self.root
        for t in tokens:
            node = node.setdefault(t, {})
        if _END not in node:
            self.size += 1
            node[_END] = payload


@dataclass(frozen=True)
class WalkState:
    """Where a partial query stands: which tokens may come next, and what has been decoded so far."""

    allowed: tuple[int, ...] | None  # None: the query is complete (or invalid): only end-of-sequence
    surface: str | None = None  # entity surface, once the separator has been decoded
    attribute: str | None = None
    no_query: bool = False
    complete: bool = False


class KeySet:
    """The valid stage-1 keys: KB names and aliases (`names`) and the attributes allowed after each."""

    def __init__(self, surfaces: dict[str, tuple[str, ...]], attributes_of: Callable[[str], Iterable[str]], *,
                 separator: str = "|", stop: str = "\n", no_query: str = "无"):
        self.surfaces = surfaces  # surface -> canonical KB entities
        self._attributes_of = _memo(attributes_of)
        self._attrs_of_surface: dict[str, tuple[str, ...]] = {}
        self.separator, self.stop, self.no_query = separator, stop, no_query
        banned = (separator, stop)
        self.names = sorted(
            s for s in surfaces if s and not any(b in s for b in banned) and self.attributes_for_surface(s)
        )

    def entities_of(self, surface: str) -> tuple[str, ...]:
        """Canonical entities a decoded surface stands for (itself when it is a KB name)."""
        ents = self.surfaces.get(surface, ())
        return (surface,) if surface in ents else ents

    def attributes_for_surface(self, surface: str) -> tuple[str, ...]:
        if surface not in self._attrs_of_surface:
            attrs: set[str] = set()
            for e in self.entities_of(surface):
                attrs.update(self._attributes_of(e))
            self._attrs_of_surface[surface] = tuple(sorted(attrs))
        return self._attrs_of_surface[surface]


class QueryGrammar(KeySet):
    """Which next tokens keep a partial query a valid `entity|attribute` KB key (or the no-query answer)."""

    def __init__(
        self,
        tokenizer,
        surfaces: dict[str, tuple[str, ...]],
        attributes_of: Callable[[str], Iterable[str]],
        *,
        separator: str = "|",
        stop: str = "\n",
        no_query: str = "无",
    ):
        super().__init__(surfaces, attributes_of, separator=separator, stop=stop, no_query=no_query)
        self.tokenizer = tokenizer
        self.sep_ids = encode_piece(tokenizer, separator)
        self.stop_ids = encode_piece(tokenizer, stop)
        self.no_query_ids = encode_piece(tokenizer, no_query)
        self.entity_trie = TokenTrie()
        self._attr_tries: dict[tuple[str, ...], TokenTrie] = {}
        self._allowed_cache: dict[int, tuple[int, ...]] = {}
        for name, ids in zip(self.names, _encode_many(tokenizer, self.names), strict=True):
            if ids:
                self.entity_trie.insert(ids + self.sep_ids, name)
        self.entity_trie.insert(self.no_query_ids + self.stop_ids, NO_QUERY)
        log.debug("query grammar: %d surfaces in the entity trie", self.entity_trie.size)

    @classmethod
    def from_kb(cls, kb, tokenizer, prompt_format, attribute_scope: str = "entity") -> QueryGrammar:
        """Grammar over every KB name and alias (alias table, incl. derived generic drug names).

        attribute_scope "entity": only attributes the entity has values for (kb.attributes_of);
        "kind": also every schema attribute of the entity's kind, so a question about a missing field
        can still be decoded (and refused) instead of being forced onto a field the entity has.
        """
        frozen, attributes_of = kb_keys(kb, attribute_scope)
        return cls(
            tokenizer,
            frozen,
            attributes_of,
            separator=prompt_format.separator,
            stop=prompt_format.stop,
            no_query=prompt_format.no_query,
        )

    # --- look-ups -----------------------------------------------------------------------------
    def _attribute_trie(self, surface: str) -> TokenTrie:
        attrs = self.attributes_for_surface(surface)
        trie = self._attr_tries.get(attrs)
        if trie is None:
            trie = TokenTrie()
            for attr, ids in zip(attrs, _encode_many(self.tokenizer, list(attrs)), strict=True):
                trie.insert(ids + self.stop_ids, attr)
            self._attr_tries[attrs] = trie
        return trie

    def _children(self, node: dict) -> tuple[int, ...]:
        key = id(node)
        cached = self._allowed_cache.get(key)
        if cached is None:
            cached = tuple(t for t in node if t != _END)
            self._allowed_cache[key] = cached
        return cached

    # --- the walk -----------------------------------------------------------------------------
    def walk(self, tokens: Sequence[int]) -> WalkState:
        """State after `tokens` (the generated part only). Invalid or complete -> allowed None."""
        node, i, n = self.entity_trie.root, 0, len(tokens)
        while i < n:
            node = node.get(tokens[i])
            i += 1
            if node is None:
                return WalkState(None)
            if _END in node:
                break
        else:
            return WalkState(self._children(node) or None)
        surface = node[_END]
        if surface == NO_QUERY:
            return WalkState(None, no_query=True, complete=True)
        node = self._attribute_trie(surface).root
        while i < n:
            node = node.get(tokens[i])
            i += 1
            if node is None:
                return WalkState(None, surface=surface)
            if _END in node:
                return WalkState(None, surface=surface, attribute=node[_END], complete=True)
        if _END in node:  # empty attribute set cannot happen: such surfaces have no attribute keys
            return WalkState(None, surface=surface, attribute=node[_END], complete=True)
        return WalkState(self._children(node) or None, surface=surface)
