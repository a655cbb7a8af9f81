"""Stage 1's KB-key constraint for a remote server: the query grammar as GBNF text, written as a character trie.

A query is `{entity}{sep}{attribute}{stop}` or `{no_query}{stop}`, as in the token grammar (ktune.pipeline.trie),
but over characters: a server applies it with its own tokenizer (llama.cpp's `grammar`, vLLM's xgrammar takes
the same GBNF). Names that share a prefix share its rule, so 27k KB names stay one small grammar that a server
parses and walks quickly; surfaces with the same allowed attributes share one attribute rule:

    root ::= "高" ("血压" (a3 | "病" a7) | "热" a2) | "无\\n"
    a3 ::= "|" ("并发症" | "药物治疗" | ...) "\\n"
"""

from __future__ import annotations

from ktune.pipeline.trie import KeySet, kb_keys

_LEAF = None  # a trie node's payload key: the rule that follows (characters are never None)


def literal(text: str) -> str:
    """A GBNF string literal of `text`."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _alternatives(node: dict) -> str:
    """The GBNF alternatives of a trie node: the rule that follows when a key ends here, then each child's run of
    single-child characters as one literal followed by the alternatives of where the run ends."""
    alts = [node[_LEAF]] if _LEAF in node else []
    for ch in sorted(k for k in node if k is not _LEAF):
        text, child = ch, node[ch]
        while _LEAF not in child and len(child) == 1:
            (nxt, child), = child.items()
            text += nxt
        rest = child[_LEAF] if len(child) == 1 else f"({_alternatives(child)})"
        alts.append(f"{literal(text)} {rest}".rstrip())
    return " | ".join(alts)


class KeyGrammar(KeySet):
    """The KB keys of one KB version: `gbnf()` for a server, `parse()` to check what a server returned."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._gbnf: str | None = None
        self._allowed = frozenset(self.names)

    @classmethod
    def from_kb(cls, kb, prompt_format, attribute_scope: str = "entity") -> KeyGrammar:
        """Every KB name and alias with the attributes allowed after it (see QueryGrammar.from_kb)."""
        surfaces, attributes_of = kb_keys(kb, attribute_scope)
        return cls(surfaces, attributes_of, separator=prompt_format.separator, stop=prompt_format.stop,
                   no_query=prompt_format.no_query)

    def gbnf(self) -> str:
        """The grammar as GBNF text (built once)."""
        if self._gbnf is None:
            rules: dict[tuple[str, ...], str] = {}
            root: dict = {}
            for name in self.names:
                rule = rules.setdefault(self.attributes_for_surface(name), f"a{len(rules)}")
                node = root
                for ch in name:
                    node = node.setdefault(ch, {})
                node[_LEAF] = rule
            node = root
            for ch in self.no_query + self.stop:
                node = node.setdefault(ch, {})
            node[_LEAF] = ""
            lines = [f"root ::= {_alternatives(root)}"]
            lines += [f"{rule} ::= {literal(self.separator)} ({' | '.join(map(literal, attrs))}) {literal(self.stop)}"
                      for attrs, rule in rules.items()]
            self._gbnf = "\n".join(lines) + "\n"
        return self._gbnf

    def parse(self, text: str) -> tuple[str, str] | str | None:
        """What a completion under the grammar wrote: (surface, attribute) for a KB key, `no_query` for the
        no-query answer, None for anything else (a server that did not apply the grammar, or a cut-off key)."""
        line = text.split(self.stop, 1)[0]
        if line == self.no_query:
            return self.no_query
        surface, sep, attribute = line.partition(self.separator)
        if sep and surface in self._allowed and attribute in self.attributes_for_surface(surface):
            return surface, attribute
        return None
