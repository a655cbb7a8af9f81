"""`PipelineConfig`: every setting of the question -> query -> knowledge -> answer pipeline, validated."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ktune.errors import ConfigError
from ktune.threads import ADAPTIVE, parse_threads
from ktune.train.loading import DTYPES

# How stage 1 turns the model's output into a KB key (measured in bench/pipeline.py --variants):
#   free      unconstrained greedy decode, then the KB's entity linker maps the string to a KB key
#   greedy    greedy decode under the token trie (entity names + aliases -> separator -> valid attributes)
#   beam      constrained beam search, best beam
#   rerank    constrained beam search, beams re-ranked with the free output and the KB linker
#   fallback  free decode; only when it misses the KB (no exact/alias link or an invalid attribute)
#             run the constrained beam search + re-rank (the default: best entity and retrieval accuracy)
# Measured on tests/fixtures/human_questions.jsonl (100 in-KB + 21 not-in-KB questions) with a 71-step
# Gemma-3-270M demo run, entity / retrieval accuracy, share of not-in-KB questions refused:
#   free 0.76 / 0.62 / 0.95   greedy 0.86 / 0.75 / 0.38   rerank (1 beam) 0.85 / 0.74 / 0.90
#   fallback (4 beams) 0.90 / 0.75 / 0.86
# The re-rank keeps the refusal when the free output names an entity the linker cannot find (or finds only
# by a fuzzy guess) and no constrained candidate agrees with it (see QueryStage.rerank): greedy trie decoding
# alone forces a KB key onto questions the KB cannot answer.
QUERY_MODES = ("free", "greedy", "beam", "rerank", "fallback")
ATTRIBUTE_SCOPES = ("entity", "kind")
QUERY_VOCABS = ("kb", "full")
ANSWER_DECODINGS = ("draft", "full")
QUANTIZE = ("auto", "none", "int8")  # CPU weight quantization (ktune.pipeline.quantize)

DEFAULT_REFUSAL = "知识库中没有“{entity}”的“{attribute}”信息，无法根据知识库回答这个问题。"
DEFAULT_NO_QUERY_REFUSAL = "这个问题在知识库中找不到对应的条目（未识别出可查询的医学实体），无法根据知识库回答。"
DEFAULT_OUTSIDE_REFUSAL = "知识库只收录疾病和药物的医学知识，不收录费用、医院或住院天数等信息，无法根据知识库回答这个问题。"


@dataclass
class PipelineConfig:
    query_mode: str = "fallback"
    num_beams: int = 4
    max_question_chars: int = 2000
    max_query_tokens: int = 32  # entity + separator + attribute + stop: 99.9% of KB keys fit in 28 Gemma tokens
    max_answer_tokens: int = 128  # 99% of the dataset's answer bodies are <= 110 Gemma tokens
    batch_size: int = 16
    device: str = "cpu"
    dtype: str = "auto"  # auto: fp32 on a CPU (answers independent of the batch), the run's training dtype on CUDA
    # "int8": the answer stage's decode steps through per-token dynamic int8 linears (ktune.pipeline.quantize:
    # 1.3-1.6x faster single answers on a CPU; an answer can then depend on its batch); "none": the weights as loaded
    # (fp32 on a CPU: concurrent answers equal sequential ones); "auto": int8 on a CPU with fp32 weights where
    # PyTorch has a quantized engine, else none
    quantize: str = "none"
    refusal_template: str = DEFAULT_REFUSAL  # {entity} and {attribute} are filled in
    no_query_refusal: str = DEFAULT_NO_QUERY_REFUSAL
    outside_refusal: str = DEFAULT_OUTSIDE_REFUSAL
    link_k: int = 8
    # attributes the grammar allows after an entity: "entity" = those it has values for (kb.attributes_of);
    # "kind" = also every attribute of its kind, so a question about a field the KB lacks is refused
    attribute_scope: str = "entity"
    # stage-1 LM head: "kb" computes logits only for tokens of KB names/aliases/attributes (exact under the
    # grammar, ~10x less head compute on Gemma's 262k vocabulary); "full" = the whole vocabulary
    query_vocab: str = "kb"
    # longest KB mention: an entity written in the question inside a longer KB name/alias -> query the longer one
    longest_mention: bool = True
    # stage 2: an attribute the entity has no value for is answered by the schema's fallback attributes of the
    # same intent (治疗方案 -> 药物治疗); refused only when the whole intent is empty
    attribute_fallback: bool = True
    # `无` for a question that names a KB condition/drug as a standalone word: query that entity (the model writes
    # the attribute after it)
    mention_fallback: bool = True
    # the entry that answers: a population word before the name leads to that population's own entry (小孩 + 肺炎 ->
    # 小儿肺炎), and an entry with nothing for the asked intent gives way to an equivalent one the KB or the lay-name
    # list states is the same condition (脑梗 -> 脑梗死, 帕金森症 -> 帕金森病; ktune.kb.linker.EntityLinker.equivalents)
    entry_rules: bool = True
    # a question asking two things ("X有什么症状，怎么治？"): each clause that is a question adds the attribute the
    # model writes for it (same entity); stage 2 gathers every part the KB can answer (ktune.pipeline.parts)
    multi_part: bool = True
    # a field the question names in the KB's own words ("哮喘 并发症") is the attribute asked, when the model wrote
    # one of another intent (ktune.pipeline.stated)
    stated_attribute: bool = True
    # a question asking what no KB field records (多少钱, 哪个医院好, 住几天院) is refused as such, not answered
    # with the nearest field's facts (ktune.pipeline.outside)
    outside_fields: bool = True
    # the claim check (ktune.pipeline.claims): answer sentences that state anything the knowledge does not are
    # dropped, premise questions ("X可以治疗Y吗") are decided from the KB; False = the model's text as written
    claim_check: bool = True
    # with the claim check: the first answer sentence it drops ends the model's text (nothing the model writes
    # after a sentence the knowledge does not support is used; the unstated fields follow as the cited listing)
    # and stage 3 stops generating that row there; False = every later sentence is checked on its own
    stop_at_failed_sentence: bool = True
    # stage-3 greedy decoding: "draft" drafts with the LM head's rows for the answer phrasing and the prompt's
    # tokens and checks every draft with the whole head (ktune.pipeline.decode: the same tokens as "full", most
    # steps without reading the 262k-row head); "full" = generate() with the whole head at every step
    answer_decoding: str = "draft"
    # a single question's free query decode drafts this many tokens by prompt lookup (generate's
    # prompt_lookup_num_tokens: the entity is mostly copied from the question; same greedy output); 0 = off
    query_lookup: int = 8
    # torch CPU threads set by from_pretrained (ktune.threads): "auto" = the physical cores ($KTUNE_THREADS
    # overrides), or N
    threads: int | str = "auto"

    def __post_init__(self):
        if self.query_mode not in QUERY_MODES:
            raise ConfigError(
                f"query_mode {self.query_mode!r} is not one of {', '.join(QUERY_MODES)}; "
                "use 'free' for --no-constrain"
            )
        if self.attribute_scope not in ATTRIBUTE_SCOPES:
            raise ConfigError(f"attribute_scope {self.attribute_scope!r} is not one of {', '.join(ATTRIBUTE_SCOPES)}")
        if self.query_vocab not in QUERY_VOCABS:
            raise ConfigError(f"query_vocab {self.query_vocab!r} is not one of {', '.join(QUERY_VOCABS)}")
        self.threads = parse_threads(self.threads)
        if self.threads == ADAPTIVE:
            raise ConfigError("threads 'adaptive' is for training only; use 'auto' or a count for inference")
        if not isinstance(self.query_lookup, int) or self.query_lookup < 0:
            raise ConfigError(f"query_lookup must be an integer >= 0 (0 = off), got {self.query_lookup!r}")
        if self.answer_decoding not in ANSWER_DECODINGS:
            raise ConfigError(f"answer_decoding {self.answer_decoding!r} is not one of {', '.join(ANSWER_DECODINGS)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.quantize not in QUANTIZE:
            raise ConfigError(f"quantize {self.quantize!r} is not one of {', '.join(QUANTIZE)}")
        if self.quantize == "int8" and (self.device != "cpu" or self.dtype not in ("auto", "fp32")):
            raise ConfigError(f"quantize {self.quantize} runs on the CPU from fp32 weights; "
                              f"got device {self.device!r}, dtype {self.dtype!r}")
        for name in ("num_beams", "max_question_chars", "max_query_tokens", "max_answer_tokens", "batch_size",
                     "link_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for key in ("{entity}", "{attribute}"):
            if key not in self.refusal_template:
                raise ConfigError(
                    f"refusal_template must contain {key} so the refusal says what was looked up; "
                    f"got {self.refusal_template!r}"
                )

    def resolved_quantize(self) -> str:
        """What `quantize` means on this machine: "auto" becomes int8 (CPU, fp32, a quantized engine) or none."""
        if self.quantize != "auto":
            return self.quantize
        if self.device != "cpu" or self.dtype not in ("auto", "fp32"):
            return "none"
        from ktune.pipeline.quantize import quantize_engine

        return "int8" if quantize_engine() is not None else "none"

    @property
    def constrained(self) -> bool:
        return self.query_mode != "free"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json_file(cls, path: str | Path, **overrides) -> PipelineConfig:
        """Load from a JSON file; keyword overrides (e.g. from CLI flags) win over the file."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read pipeline config {path}: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown pipeline settings {unknown}; valid: {sorted(known)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**raw)
