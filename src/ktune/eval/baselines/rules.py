"""Dictionary + keyword-intent rules in the style of QASystemOnMedicalKG.

Longest dictionary match of a KB name or alias in the question (`kb.linker.find_mentions`), then the attribute
whose longest keyword occurs in the question, among the attributes valid for the entity's kind.
When nothing matches, the canned fallback: no query (the system says it cannot answer).
"""

from __future__ import annotations

from ktune.eval.systems import Prediction, lookup

# Attribute -> intent keywords, tried in this order (more specific intents first: 药物治疗 before 治疗方案).
ATTRIBUTE_CUES: dict[str, tuple[str, ...]] = {
    "药物相互作用": (
        "药物相互作用",
        "相互作用",
        "一起吃",
        "一起服用",
        "同服",
        "合用",
        "同时用",
        "同时服用",
        "配伍",
        "影响其他药",
        "不能和",
        "一起用",
    ),
    "不良反应": ("不良反应", "副作用", "副反应", "毒副", "有害吗", "坏处", "什么反应", "不舒服", "用了以后"),
    "禁忌": ("禁忌", "禁用", "不能用", "不能吃", "不宜", "不适合", "哪些人不"),
    "注意事项": ("注意事项", "注意", "孕妇", "哺乳", "儿童能", "老人能", "小心", "怀孕", "孕期"),
    "用法用量": (
        "用法用量",
        "用法",
        "用量",
        "怎么吃",
        "怎么用",
        "怎么服",
        "吃多少",
        "用多少",
        "剂量",
        "一天几次",
        "几次",
        "饭前",
        "饭后",
    ),
    "成份": ("成份", "成分", "组成", "什么做的", "含有", "配方", "做成", "做的"),
    "药物分类": ("处方药", "分类", "哪一类", "哪类", "医保", "OTC", "什么药", "中药还是西药", "报销"),
    "贮藏": ("贮藏", "储存", "保存", "存放", "有效期", "保质期", "放多久", "放多长"),
    "规格": ("规格", "剂型", "包装", "每片", "每粒", "一片多少", "一粒多少", "多少毫克"),
    "性状": ("性状", "外观", "什么样子", "颜色", "长什么样", "看起来"),
    "适应症": (
        "适应症",
        "主治",
        "功能主治",
        "治什么",
        "用于",
        "适用",
        "能治",
        "治疗什么",
        "管什么",
        "治哪些",
        "有效",
        "可以治",
        "什么情况下可以用",
        "用在什么病",
    ),
    "药物治疗": ("药物治疗", "吃什么药", "用什么药", "什么药", "药物", "用药", "药"),
    "治疗方案": ("治疗方案", "治疗", "怎么治", "如何治", "怎么办", "疗法", "手术", "好办法", "办法"),
    "临床表现": (
        "临床表现",
        "症状",
        "表现",
        "什么感觉",
        "会怎么样",
        "征兆",
        "迹象",
        "体征",
        "有什么反应",
        "不舒服",
    ),
    "病因": ("病因", "原因", "为什么会", "怎么引起", "引起的", "导致", "诱因", "怎么得", "怎么来的"),
    "高危因素": ("高危因素", "高危", "危险因素", "风险因素", "容易得", "哪些因素", "促使", "增加", "更容易"),
    "多发人群": (
        "多发人群",
        "人群",
        "哪些人",
        "什么人",
        "谁容易",
        "易感",
        "好发",
        "多见于",
        "男的多还是女的多",
        "什么样的人",
        "容易患",
    ),
    "发病部位": ("发病部位", "部位", "哪个部位", "长在哪", "哪里"),
    "就诊科室": ("就诊科室", "科室", "挂什么科", "哪个科", "什么科", "挂号", "看哪", "内科还是外科", "挂"),
    "检查": ("检查", "化验", "确诊", "查什么", "怎么查", "诊断"),
    "鉴别诊断": ("鉴别诊断", "鉴别", "区分", "区别", "症状相似", "相似", "混淆"),
    "并发症": ("并发症", "并发", "后果", "引起什么", "会引发"),
    "传染性": ("传染性", "传染", "传播", "会不会传"),
    "预防": ("预防", "避免", "防止", "防范", "降低", "不得", "才能不"),
    "预后": ("预后", "能治愈", "能治好", "治得好", "能好吗", "恢复", "能活", "严重吗"),
    "病理分型": ("病理分型", "分型", "类型", "分期", "阶段", "几型", "哪几类", "几类"),
    "性味": ("性味", "味道", "性寒", "性温", "归经", "什么味", "寒性", "热性", "凉性"),
    "功效": ("功效", "功用", "作用", "好处", "有什么用"),
    "毒性": ("毒性", "有毒", "毒"),
    "入药部位": ("入药部位", "入药", "哪部分", "用哪个部位"),
    "产地与采收": ("产地", "采收", "采集", "哪里产", "什么时候采", "分布"),
    "相关疾病": ("相关疾病", "什么病", "哪些病", "疾病", "提示什么", "说明什么", "见于"),
    "相关症状": ("相关症状", "伴随", "症状", "伴有什么", "伴随什么"),
}


class RuleSystem:
    """Longest dictionary match + keyword intent; canned fallback (no query) when nothing matches."""

    name = "rules (dictionary + intent)"
    note = (
        "longest KB name/alias in the question (exact or normalized, no fuzzy) + longest matching intent "
        "keyword list valid for the entity's kind; no query when either is missing"
    )

    def __init__(self, kb, cues: dict[str, tuple[str, ...]] | None = None):
        self.kb = kb
        self.cues = cues or ATTRIBUTE_CUES

    def entity_of(self, question: str) -> str | None:
        """The KB entity behind the longest name or alias found in the question."""
        mentions = self.kb.linker.find_mentions(question)
        for _i, _j, surface in sorted(mentions, key=lambda m: m[1] - m[0], reverse=True):
            links = self.kb.link(surface, k=1)
            if links and links[0].method not in ("fuzzy", "pinyin"):
                return links[0].entity
        return None

    def intent_of(self, question: str, kind: str | None) -> str | None:
        """The attribute valid for `kind` with the longest keyword in the question (ties: rule order)."""
        valid = set(self.kb.schema.attributes_for_kind(kind)) if kind else set(self.kb.schema.names)
        best, best_len = None, 0
        for attr, words in self.cues.items():
            if attr not in valid or attr not in self.kb.schema.attributes:
                continue
            longest = max((len(w) for w in words if w in question), default=0)
            if longest > best_len:
                best, best_len = attr, longest
        return best

    def predict(self, questions: list[str]) -> list[Prediction]:
        out = []
        for q in questions:
            entity = self.entity_of(q)
            attr = self.intent_of(q, self.kb.kind(entity)) if entity else None
            if entity is None or attr is None:  # the canned fallback: no query at all
                out.append(lookup(self.kb, None, None, fallback=True, matched_entity=entity))
            else:
                out.append(lookup(self.kb, entity, attr, fallback=False))
        return out
