"""Generation backends: what runs stage 1 (query generation) and stage 3 (answer text).

  local   the run's model in this process through transformers (ktune.pipeline.decode): token-trie constrained
          decoding, beams, the stage-1 subset head, draft-and-verify answers, streaming. The default.
  openai  any OpenAI-compatible completions server (llama.cpp's server, vLLM, SGLang) serving the run's model
          (`ktune export --gguf` for llama.cpp, `--merge` for vLLM): the run's prompts are sent as raw completion
          prompts to /v1/completions at temperature 0, stopped at the prompt format's stop string. Stage 1's KB-key constraint is sent as a GBNF
          grammar (ktune.pipeline.gbnf) in the body field `grammar_field` names:
            grammar                      llama.cpp server
            structured_outputs.grammar   vLLM (structured outputs, xgrammar)
            guided_grammar               older vLLM (guided decoding)
            none                         a server that cannot constrain: free decoding + the KB linker
          Whatever the server returns is checked against the KB keys: output that is no KB key (the server did
          not apply the grammar) is resolved like free output (QueryStage.resolve_free), so no non-KB key is
          ever looked up. Constrained modes run one candidate (a server has no constrained beam search):
          beam/rerank/fallback re-rank that one greedy candidate, as local decoding with num_beams 1.

Stages 2 (KB look-up), the linker rules, the claim check and refusals run in this process either way. Each
answer's `generation` says which backend produced it and which constraint was sent; its link method says
whether its query came out of the grammar (`constrained:...`) or free text through the linker.
"""

from __future__ import annotations

import logging

from ktune.errors import ConfigError
from ktune.pipeline.answer import AnswerStage
from ktune.pipeline.decode import Beam
from ktune.pipeline.gbnf import KeyGrammar
from ktune.pipeline.query import Query, QueryStage

log = logging.getLogger(__name__)

BACKENDS = ("local", "openai")
GRAMMAR_FIELDS = ("grammar", "structured_outputs.grammar", "guided_grammar", "none")


class Backend:
    """Builds the decoder, the stage-1 and the stage-3 objects a KnowledgeTunedQA runs."""

    name = "?"
    streams_answers = True  # answer text can be streamed as it is generated (a transformers streamer)

    def stages(self, kb, prompt_format, config):
        """(decoder, QueryStage, AnswerStage) for this KB and prompt format."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What each answer reports as its `generation`."""
        return {"backend": self.name}

    def mode(self, config) -> dict:
        """describe() and how this backend runs `config`: the stage-1 mode in effect, whether answers stream."""
        return {**self.describe(), "query_mode": config.query_mode, "answer_streaming": self.streams_answers}


class LocalBackend(Backend):
    """The run's model and tokenizer in this process (today's path)."""

    name = "local"

    def __init__(self, model, tokenizer, grammar=None):
        self.model, self.tokenizer, self.grammar = model, tokenizer, grammar

    def mode(self, config) -> dict:
        return {**super().mode(config), "quantize": config.quantize}  # int8: ktune.pipeline.quantize

    def stages(self, kb, prompt_format, config):
        from ktune.pipeline.decode import Decoder
        from ktune.query_vocab import answer_draft_ids

        draft = answer_draft_ids(self.tokenizer) if config.answer_decoding == "draft" else None
        decoder = Decoder(self.model, self.tokenizer, prompt_format, draft_ids=draft)
        return (decoder, QueryStage(decoder, kb, prompt_format, config, self.grammar),
                AnswerStage(decoder, prompt_format, config, kb))


class OpenAIBackend(Backend):
    """A remote OpenAI-compatible completions server (see the module docstring)."""

    name = "openai"
    streams_answers = False  # a completion comes back whole (a streamed request gets it as one piece)

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, grammar_field: str = "grammar",
                 timeout: float = 120.0, retries: int = 3):
        from ktune.chat_api import ChatClient

        if grammar_field not in GRAMMAR_FIELDS:
            raise ConfigError(f"grammar field {grammar_field!r} is not one of {', '.join(GRAMMAR_FIELDS)}")
        self.base_url, self.model, self.grammar_field = base_url, model, grammar_field
        self.client = ChatClient(base_url, model, api_key=api_key, timeout=timeout, retries=retries,
                                 temperature=0.0, hint="--base-url, --model and --api-key")

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model, "query_constraint": self.grammar_field}

    def mode(self, config) -> dict:
        out = super().mode(config)
        if self.grammar_field == "none":  # RemoteQueryStage._decode: nothing constrains, every mode is free
            out["query_mode"] = "free"
        return out

    def stages(self, kb, prompt_format, config):
        if prompt_format.chat_template:
            raise ConfigError(f"prompt format {prompt_format.name!r} wraps prompts in the tokenizer's chat template; "
                              "the openai backend sends raw completion prompts: use --backend local")
        decoder = RemoteDecoder(self.client, prompt_format, self.grammar_field)
        return decoder, RemoteQueryStage(decoder, kb, prompt_format, config), AnswerStage(decoder, prompt_format, config, kb)


def _body(field: str, grammar: str) -> dict:
    """{"a": {"b": grammar}} for field "a.b"."""
    out: dict = {}
    node = out
    *parents, last = field.split(".")
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = grammar
    return out


class RemoteDecoder:
    """Decoder's `greedy`/`beams` over a completions server: text only (Beam.tokens is empty)."""

    tokenizer = None

    def __init__(self, client, prompt_format, grammar_field: str):
        self.client, self.fmt, self.grammar_field = client, prompt_format, grammar_field

    def greedy(self, prompts: list[str], max_new_tokens: int, grammar: KeyGrammar | None = None,
               forced=None, streamer=None, stop=None) -> list[Beam]:
        """`stop` is not applied: the server's completion comes back whole (the answer policy is the same)."""
        if streamer is not None:
            raise ConfigError("streamed answers need the local backend")
        if forced:
            raise ValueError("a remote decoder takes forced query text as part of the prompt")
        if not prompts:
            return []
        extra = None
        if grammar is not None and self.grammar_field != "none":
            extra = _body(self.grammar_field, grammar.gbnf())
        texts = self.client.complete_text(prompts, max_new_tokens, stop=[self.fmt.stop], extra_body=extra)
        return [Beam(t.split(self.fmt.stop, 1)[0], (), 0.0) for t in texts]

    def beams(self, prompts: list[str], max_new_tokens: int, grammar: KeyGrammar, num_beams: int) -> list[list[Beam]]:
        """One candidate per prompt: servers have no constrained beam search."""
        return [[b] for b in self.greedy(prompts, max_new_tokens, grammar)]


class RemoteQueryStage(QueryStage):
    """Stage 1 over a RemoteDecoder: the same modes and resolution rules, the KB keys as a character grammar."""

    @property
    def head(self):
        return None

    @property
    def grammar(self) -> KeyGrammar:
        """The KB keys of this KB version, with their GBNF text built (warm() builds it before the first request)."""
        return self.kb.derived(self, "key_grammar", self._build_grammar)

    def _build_grammar(self) -> KeyGrammar:
        grammar = KeyGrammar.from_kb(self.kb, self.fmt, self.config.attribute_scope)
        if self.decoder.grammar_field != "none":
            grammar.gbnf()
        return grammar

    @property
    def query_decoder(self):
        return self.decoder

    def _decode(self, questions: list[str], mode: str) -> list[Query]:
        """A server that cannot constrain (grammar field none): every mode is free decoding + the linker."""
        return super()._decode(questions, "free" if self.decoder.grammar_field == "none" else mode)

    def _attribute_beams(self, questions: list[str], entities: list[str]) -> list[Beam]:
        prompts = [self.fmt.query_prompt(q) + e + self.fmt.separator for q, e in zip(questions, entities, strict=True)]
        return self.decoder.greedy(prompts, self.config.max_query_tokens)

    def _key(self, beam: Beam) -> Query | None:
        """The query a constrained completion wrote, or None when it is no KB key."""
        parsed = self.grammar.parse(beam.text)
        if parsed is None:
            log.warning("the server returned %r, no KB key, although the grammar was sent as %r: it does not "
                        "apply it; the output is resolved as free text", beam.text[:60], self.decoder.grammar_field)
            return None
        if parsed == self.fmt.no_query:
            return Query(None, None, None, raw=beam.text, link_method="no_query")
        surface, attribute = parsed
        entity, score, method = self._canonical(surface, attribute)
        return Query(surface, attribute, entity, score, f"constrained:{method}", beam.text)

    def _from_beam(self, beam: Beam) -> Query:
        key = self._key(beam)
        return key if key is not None else self.resolve_free(beam.text)

    def rerank(self, question: str, free: Query, beams: list[Beam]) -> Query:
        """As QueryStage.rerank over the candidates that are KB keys; none: the free query stands."""
        keys = [b for b in beams if self._key(b) is not None]
        return super().rerank(question, free, keys) if keys else free
